"""Ray Serve deployment of the fair retriever: POST /retrieve, GET /health, GET /stats, routed by
``serve/http.py`` (no web framework: FastAPI's per-request cost was a third of the floor on two
cores). The replica searches the partitions itself (``retrieval.search_in: replica``, the
default) or fans out to shard actors (``shard_actors``), and reports what it served to the
dual-vector actor.

Concurrent requests are gathered into one search (one call per shard actor for the whole batch):
FAISS answers a batch of queries for little more than one, so batching is what keeps throughput
up as concurrency grows. The batching has no timer (``cluster/retrieval/batching.py``): a
request that finds the search free starts one at once, so a quiet service adds no wait, and
requests that arrive while ``MAX_FANOUTS`` searches run leave together with the next one. All
requests of a batch see the same μ, as FairSync's batched dual update assumes. A batch's answers
wait for its exposure report to be acknowledged (write-ahead), but the next batch's search does
not: the report travels while the next batch is searched.

Metrics (``serve/metrics.py``): requests, errors and latency per route and status, batch sizes,
served slots per group, partial answers, and the dual vector's exposure, μ, ESP and fill."""

import json

import numpy as np
import orjson
import ray
from ray import serve
from ray.exceptions import RayActorError
from starlette.requests import Request
from starlette.responses import Response

from actors.retrieval_coordinator import Retrieved
from cluster.retrieval.batching import Batcher
from configs import SimConfig
from serve.backend import start_backend
from serve.http import HTTPError, dispatch, json_bytes, parse_body, read_body
from serve.metrics import RetrieverMetrics
from serve.models import RetrieveRequest, StatsResponse


MAX_BATCH = 64
# Searches of one replica at a time. A batch costs its calls to the shard actors whatever its
# size, and the in-process search has one thread: with one at a time the requests that arrive
# meanwhile leave together (over shard actors, a mean batch of 8 at concurrency 16 against 4.7
# with two at a time, and 744-811 q/s against 624-691).
MAX_FANOUTS = 1


@serve.deployment(ray_actor_options={"num_cpus": 0}, max_ongoing_requests=256)
class FairRetriever:
    def __init__(self, cfg: SimConfig, name_prefix: str = ""):
        import torch

        torch.set_num_threads(1)
        backend = start_backend(cfg, name_prefix)
        catalog = backend.catalog
        self.coordinator = backend.actors.coordinator
        self.dual = backend.actors.dual
        self.user_row = {int(u): i for i, u in enumerate(catalog.user_ids)}
        self.user_vectors = catalog.user_vectors
        self.item_ids = catalog.item_ids
        self.group_names = catalog.group_names
        self.max_k = cfg.retrieval.max_k
        self.batcher: Batcher = Batcher(self._fan_out, MAX_BATCH, MAX_FANOUTS)
        self.ongoing = 0  # requests of any route in this replica now
        self.metrics = RetrieverMetrics(cfg.name, list(self.group_names))
        dual = self.dual
        self.metrics.poll_stats(lambda: ray.get(dual.stats.remote(), timeout=10))
        self.routes = {
            ("POST", "/retrieve"): self.retrieve,
            ("GET", "/health"): self.health,
            ("GET", "/stats"): self.stats,
        }

    async def __call__(self, request: Request) -> Response:
        self.ongoing += 1
        try:
            return await dispatch(request, self.routes, self.metrics.observe_request)
        finally:
            self.ongoing -= 1

    async def health(self, _: Request) -> Response:
        # Serving goes on while the dual-vector actor cannot be reached, but its exposure counts
        # lag (or, once the outbox is full, lose) what is served: "degraded" says so.
        outbox = self.coordinator.outbox
        counted = self.coordinator.exposure_counted
        return json_bytes(
            json.dumps(
                {
                    "status": "ok" if counted and not outbox.dropped_requests else "degraded",
                    "shards": self.coordinator.partitions,
                    "search_in": "replica" if self.coordinator.local is not None else "shard_actors",
                    "items": int(len(self.item_ids)),
                    "groups": len(self.group_names),
                    "exposure_counted": counted,
                    "unreported": len(outbox.unacked),
                    "dropped_requests": outbox.dropped_requests,
                }
            ).encode()
        )

    # The body is written straight to JSON by orjson (``RetrieveResponse`` documents it; a test
    # checks the answer against it): a model object per item, validated, or the standard json
    # module (17 µs against 1 µs a body) is per-request work that queues requests on two cores.
    async def retrieve(self, request: Request) -> Response:
        body = parse_body(await read_body(request), RetrieveRequest)
        query = self._query(body)
        try:
            answer, row, seq = await self._serve_batch((query, body.k))
        except RuntimeError as exc:
            raise HTTPError(503, str(exc)) from None
        await self.coordinator.counted(seq)
        return json_bytes(orjson.dumps(_listing(answer, row, self.item_ids, self.group_names)))

    def _query(self, body: RetrieveRequest) -> np.ndarray:
        if body.k > self.max_k:
            raise HTTPError(422, f"k={body.k} exceeds the maximum of {self.max_k}")
        if body.user_id is not None:
            if body.user_id not in self.user_row:
                raise HTTPError(404, f"unknown user_id {body.user_id}")
            return self.user_vectors[self.user_row[body.user_id]]
        query = np.asarray(body.user_vector, dtype=np.float32)
        if query.shape != (self.user_vectors.shape[1],):
            raise HTTPError(422, f"user_vector has {query.size} values, expected {self.user_vectors.shape[1]}")
        return query

    async def _serve_batch(self, request: tuple[np.ndarray, int]) -> tuple[Retrieved, int, int]:
        """One request (query, k) searched within a batch of those that came with it: the
        batch's answer, the request's row in it and the number of the batch's report."""
        return await self.batcher.submit(request)

    async def _fan_out(self, requests: list[tuple[np.ndarray, int]]) -> list[tuple[Retrieved, int, int]]:
        queries = np.stack([q for q, _ in requests])
        # Alone in the replica: nothing to batch with, so nothing gained by searching off the loop.
        alone = self.ongoing == 1
        answer, seq = await self.coordinator.search_async(queries, np.array([k for _, k in requests]), alone)
        self.metrics.observe_batch(answer.groups, len(requests), answer.partial)
        self.metrics.set_outbox(len(self.coordinator.outbox.unacked), self.coordinator.outbox.dropped_requests)
        return [(answer, row, seq) for row in range(len(requests))]

    async def stats(self, _: Request) -> Response:
        # Reports still waiting (the dual-vector actor was restarting) are sent first, so the
        # counts below include every list this replica served, unless ``unreported`` says not.
        await self.coordinator.flush(timeout_s=5.0)
        try:
            dual_stats = await self.dual.stats.remote()
        except RayActorError:
            raise HTTPError(503, "the dual-vector actor is restarting from its saved state; retry shortly") from None
        answer = StatsResponse(
            groups=self.group_names,
            fanouts=self.batcher.batches,
            fanout_requests=self.batcher.items,
            unreported=len(self.coordinator.outbox.unacked),
            dropped_requests=self.coordinator.outbox.dropped_requests,
            **dual_stats,
        )
        return json_bytes(answer.model_dump_json().encode())


def _listing(answer: Retrieved, row: int, item_ids: np.ndarray, group_names: list[str]) -> dict:
    """Row ``row`` of a batch's answer as the response body."""
    hits = answer.hits
    found = hits.items[row] >= 0
    items = [
        {"id": int(item_ids[i]), "group": group_names[int(g)], "score": float(s), "adjusted_score": float(a)}
        for i, g, s, a in zip(
            hits.items[row][found].tolist(),
            answer.groups[row][found].tolist(),
            hits.scores[row][found].tolist(),
            hits.adjusted[row][found].tolist(),
        )
    ]
    return {"items": items, "mu_version": answer.mu_version, "partial": answer.partial}
