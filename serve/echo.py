"""The fair retriever's floor for benchmarks: the same routing and request model, answered at once
without retrieving, so what it costs is Ray Serve's, the proxy's and the machine's share
(``jobs/bench_retrieval.py``, row (d))."""

from ray import serve
from starlette.requests import Request
from starlette.responses import Response

from serve.http import dispatch, json_bytes, parse_body
from serve.models import RetrieveRequest


@serve.deployment(ray_actor_options={"num_cpus": 0}, max_ongoing_requests=256)
class RetrieveEcho:
    def __init__(self):
        self.routes = {("POST", "/retrieve"): self.retrieve}

    async def __call__(self, request: Request) -> Response:
        return await dispatch(request, self.routes)

    async def retrieve(self, request: Request) -> Response:
        body = parse_body(await request.body(), RetrieveRequest)
        return json_bytes(b'{"items": [], "mu_version": 0, "partial": false, "k": %d}' % body.k)
