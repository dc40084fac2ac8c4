"""Fan a query batch out to every shard, merge the global top-K, report the served lists to the
dual-vector actor. A shard that is down (or restarting) is skipped and the answer is marked
partial instead of failing."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import ray
from ray.exceptions import RayActorError, RayTaskError

from cluster.retrieval.shard_index import Hits, merge_top_k


@dataclass(frozen=True)
class Retrieved:
    hits: Hits
    groups: np.ndarray
    partial: bool
    mu_version: int


def retrieve(shards: list, dual, queries: np.ndarray, k: int, item_groups: dict | np.ndarray,
             timeout_s: float = 10.0) -> Retrieved:
    mu, version = ray.get(dual.current.remote())
    refs = [shard.search.remote(queries, k, mu, version) for shard in shards]
    ready, not_ready = ray.wait(refs, num_returns=len(refs), timeout=timeout_s)
    parts, partial = [], bool(not_ready)
    for ref in ready:
        try:
            hits, _ = ray.get(ref)
            parts.append(hits)
        except (RayActorError, RayTaskError):
            partial = True
    if not parts:
        raise RuntimeError("no retrieval shard answered")
    merged = merge_top_k(parts, k)
    groups = np.asarray(item_groups)[np.where(merged.items >= 0, merged.items, 0)]
    dual.observe.remote(groups[merged.items >= 0], len(queries))
    return Retrieved(merged, groups, partial, version)
