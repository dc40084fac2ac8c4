"""Start the fair retriever's actors: ``shard-<i>`` over partitions saved as .npz (a restarted
shard reloads its file) and ``dual-vector`` holding the exposure policy. The caller owns them:
they live as long as the job, the ``serve run`` process or the test that started them."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import ray

from actors.dual_vector import DualVectorActor
from actors.retrieval_coordinator import Coordinator
from actors.retrieval_shard import RetrievalShard
from cluster.retrieval.catalog import Catalog
from cluster.retrieval.partitions import partition_items
from cluster.retrieval.policies import Policy
from configs.schema import RetrievalConfig

SHARD_RESTARTS = -1  # a shard holds no state its file cannot rebuild: always bring it back


@dataclass
class RetrievalActors:
    shards: list
    dual: object
    coordinator: Coordinator

    def kill(self) -> None:
        for handle in [self.dual, *self.shards]:
            ray.kill(handle, no_restart=True)


def save_partitions(cfg: RetrievalConfig, catalog: Catalog, folder: Path, rng: np.random.Generator) -> list[Path]:
    rows = np.arange(len(catalog.item_ids), dtype=np.int64)
    paths = []
    for i, part in enumerate(partition_items(rows, catalog.item_vectors, catalog.item_groups, cfg.n_shards, rng)):
        paths.append(folder / f"shard-{i}.npz")
        part.save(paths[-1])
    return paths


def start_retrieval(cfg: RetrievalConfig, catalog: Catalog, policy: Policy, partition_paths: list[Path],
                    state_path: Path, name_prefix: str = "", reuse: bool = False) -> RetrievalActors:
    """``reuse``: take over actors of these names when they already exist (a second replica)."""
    shard_cls = ray.remote(RetrievalShard)
    shards = [
        shard_cls.options(name=f"{name_prefix}shard-{i}", num_cpus=0, max_restarts=SHARD_RESTARTS,
                          get_if_exists=reuse).remote(
            f"shard-{i}", str(path), catalog.n_groups, cfg.index, cfg.ivf_nlist, cfg.ivf_nprobe, cfg.ivf_overfetch)
        for i, path in enumerate(partition_paths)
    ]
    dual = ray.remote(DualVectorActor).options(name=f"{name_prefix}dual-vector", num_cpus=0, max_restarts=3,
                                               get_if_exists=reuse).remote(str(state_path), policy, shards)
    ray.get([s.ready.remote() for s in shards] + [dual.ready.remote()])
    return RetrievalActors(shards, dual, Coordinator(shards, dual, catalog.item_groups))
