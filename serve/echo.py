"""The fair retriever's floor for benchmarks: the same route and request model, answered at once
without retrieving, so what it costs is Ray Serve's, the proxy's and the machine's share
(``jobs/bench_retrieval.py``, row (d))."""

from fastapi import FastAPI
from ray import serve

from serve.models import RetrieveRequest

app = FastAPI(title="FairFleet retriever floor (echo)")


@serve.deployment(ray_actor_options={"num_cpus": 0}, max_ongoing_requests=256)
@serve.ingress(app)
class RetrieveEcho:
    @app.post("/retrieve")
    async def retrieve(self, body: RetrieveRequest) -> dict:
        return {"items": [], "mu_version": 0, "partial": False, "k": body.k}
