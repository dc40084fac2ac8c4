"""Replay a request stream through the retriever's actors in batches of B requests (one μ per
batch, as FairSync's batched dual update assumes) and record what was served."""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from actors.retrieval_coordinator import Coordinator
from cluster.retrieval.catalog import Catalog, RequestStream


@dataclass(frozen=True)
class Replay:
    """served (T, K) item rows; exposure (n_batches, G) cumulative slots per group after each
    batch; requests_done (n_batches,); batch_ms (n_batches,) wall time of each batch;
    partial: batches answered without every shard."""

    served: np.ndarray
    exposure: np.ndarray
    requests_done: np.ndarray
    batch_ms: np.ndarray
    partial: int


def replay(coordinator: Coordinator, catalog: Catalog, stream: RequestStream, k: int, batch: int,
           exclude_seen: bool = True) -> Replay:
    served = np.full((len(stream), k), -1, dtype=np.int64)
    exposure = np.zeros(catalog.n_groups)
    snapshots, done, times, partial = [], [], [], 0
    for lo in range(0, len(stream), batch):
        hi = min(lo + batch, len(stream))
        queries = catalog.user_vectors[stream.users[lo:hi]]
        started = time.perf_counter()
        answer = coordinator.retrieve(queries, k, stream.seen(lo, hi) if exclude_seen else None)
        times.append((time.perf_counter() - started) * 1e3)
        served[lo:hi] = answer.hits.items
        exposure += np.bincount(answer.groups[answer.groups >= 0], minlength=catalog.n_groups)
        snapshots.append(exposure.copy())
        done.append(hi)
        partial += int(answer.partial)
    return Replay(served, np.array(snapshots), np.array(done), np.array(times), partial)
