"""Ray Serve deployment of the fair retriever: FastAPI ingress over the shard and dual-vector
actors. POST /retrieve, GET /health, GET /stats."""


import numpy as np
import ray
from fastapi import FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from ray import serve

from actors.retrieval_coordinator import retrieve
from serve.models import RetrievedItem, RetrieveRequest, RetrieveResponse, StatsResponse

app = FastAPI(title="FairFleet fair retriever")


@app.exception_handler(RequestValidationError)
async def _invalid_body(_: Request, exc: RequestValidationError) -> JSONResponse:
    """422 with the field and the reason, without echoing the input: a NaN in the body would
    otherwise make the error itself unserializable (a 500)."""
    detail = [{"loc": list(e.get("loc", ())), "msg": e.get("msg", ""), "type": e.get("type", "")} for e in exc.errors()]
    return JSONResponse(status_code=422, content={"detail": detail})


@serve.deployment(ray_actor_options={"num_cpus": 0})
@serve.ingress(app)
class FairRetriever:
    def __init__(self, shards: list, dual, user_ids: np.ndarray, user_vectors: np.ndarray, item_ids: np.ndarray,
                 item_groups: np.ndarray, group_names: list[str], max_k: int):
        self.shards = shards
        self.dual = dual
        self.user_row = {int(u): i for i, u in enumerate(user_ids)}
        self.user_vectors = np.asarray(user_vectors, dtype=np.float32)
        self.item_ids = np.asarray(item_ids)
        self.item_groups = np.asarray(item_groups)
        self.group_names = list(group_names)
        self.max_k = max_k

    @app.get("/health")
    def health(self) -> dict:
        return {"status": "ok", "shards": len(self.shards), "items": int(len(self.item_ids))}

    @app.post("/retrieve", response_model=RetrieveResponse)
    def retrieve(self, body: RetrieveRequest) -> RetrieveResponse:
        if body.k > self.max_k:
            raise HTTPException(422, f"k={body.k} exceeds the maximum of {self.max_k}")
        if body.user_id is not None:
            if body.user_id not in self.user_row:
                raise HTTPException(404, f"unknown user_id {body.user_id}")
            query = self.user_vectors[self.user_row[body.user_id]]
        else:
            query = np.asarray(body.user_vector, dtype=np.float32)
            if query.shape != (self.user_vectors.shape[1],):
                raise HTTPException(422, f"user_vector has {query.size} values, expected {self.user_vectors.shape[1]}")
        try:
            answer = retrieve(self.shards, self.dual, query[None, :], body.k, self.item_groups)
        except RuntimeError as exc:
            raise HTTPException(503, str(exc)) from None
        hits = answer.hits
        found = hits.items[0] >= 0
        items = [
            RetrievedItem(id=int(self.item_ids[i]), group=self.group_names[int(g)], score=float(s), adjusted_score=float(a))
            for i, g, s, a in zip(hits.items[0][found], answer.groups[0][found], hits.scores[0][found], hits.adjusted[0][found])
        ]
        return RetrieveResponse(items=items, mu_version=answer.mu_version, partial=answer.partial)

    @app.get("/stats", response_model=StatsResponse)
    def stats(self) -> StatsResponse:
        return StatsResponse(groups=self.group_names, **ray.get(self.dual.stats.remote()))
