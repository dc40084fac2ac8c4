"""Start the fair retriever's actors: ``dual-vector`` holding the exposure policy and, with
``search_in: shard_actors``, ``shard-<i>`` over partitions saved as .npz in the storage (a shard
restarted on any node reloads its file; with ``search_in: replica`` the caller loads them
itself). The caller owns the actors: they live as long as the job, the ``serve run`` process or
the test that started them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import ray

from actors.dual_vector import DualVectorActor
from actors.retrieval_coordinator import Coordinator
from actors.retrieval_shard import RetrievalShard
from cluster.retrieval.catalog import Catalog
from cluster.retrieval.local_shards import LocalShards
from cluster.retrieval.partitions import partition_items
from cluster.retrieval.policies import Policy
from cluster.retrieval.shard_index import IndexSettings
from cluster.storage import Storage
from configs.schema import RetrievalConfig

SHARD_RESTARTS = -1  # a shard holds no state its file cannot rebuild: always bring it back


@dataclass
class RetrievalActors:
    shards: list
    # Ray's handle: mypy sees an actor method as the class's plain function, with no ``.remote``.
    dual: Any
    coordinator: Coordinator

    def kill(self) -> None:
        for handle in [self.dual, *self.shards]:
            ray.kill(handle, no_restart=True)


def shard_name(index: int) -> str:
    return f"shard-{index}"


def saved_partitions(folder: Storage) -> int:
    """How many partitions ``folder`` holds (shard-0.npz, shard-1.npz, ...)."""
    names = set(folder.list())
    count = 0
    while f"{shard_name(count)}.npz" in names:
        count += 1
    return count


def save_partitions(cfg: RetrievalConfig, catalog: Catalog, folder: Storage, rng: np.random.Generator) -> None:
    rows = np.arange(len(catalog.item_ids), dtype=np.int64)
    for i, part in enumerate(partition_items(rows, catalog.item_vectors, catalog.item_groups, cfg.n_shards, rng)):
        part.save(folder, f"{shard_name(i)}.npz")


def start_shards(
    cfg: RetrievalConfig, n_groups: int, partitions: Storage, name_prefix: str = "", reuse: bool = False
) -> list:
    """One shard actor per partition in ``partitions``; ``reuse``: take over actors of these names
    when they already exist (a second replica)."""
    shard_cls = ray.remote(RetrievalShard)
    settings = IndexSettings(**cfg.shard_index_settings())
    return [
        shard_cls.options(
            name=f"{name_prefix}{shard_name(i)}",
            num_cpus=cfg.shard_num_cpus,
            max_restarts=SHARD_RESTARTS,
            get_if_exists=reuse,
        ).remote(shard_name(i), partitions, n_groups, settings)
        for i in range(cfg.n_shards)
    ]


def start_dual(policy: Policy, shards: list, state: Storage, name_prefix: str = "", reuse: bool = False):
    """The dual-vector actor of ``shards``, its state in ``state``. It makes no call to them: μ
    reaches each shard with the coordinators' queries."""
    return (
        ray.remote(DualVectorActor)
        .options(name=f"{name_prefix}dual-vector", num_cpus=0, max_restarts=3, get_if_exists=reuse)
        .remote(state, policy)
    )


def load_local_shards(cfg: RetrievalConfig, n_groups: int, partitions: Storage) -> LocalShards:
    """Every partition in ``partitions``, with the index its shard actor would load or build."""
    settings = IndexSettings(**cfg.shard_index_settings())
    return LocalShards.load(partitions, [shard_name(i) for i in range(cfg.n_shards)], n_groups, settings)


def start_retrieval(
    cfg: RetrievalConfig,
    catalog: Catalog,
    policy: Policy,
    partitions: Storage,
    state: Storage,
    name_prefix: str = "",
    reuse: bool = False,
) -> RetrievalActors:
    """``partitions``: the folder save_partitions wrote; ``state``: the dual-vector actor's folder;
    ``reuse``: take over actors of these names when they already exist (a second replica).
    With ``search_in: replica`` the partitions are loaded into this process and no shard actor
    starts."""
    local = load_local_shards(cfg, catalog.n_groups, partitions) if cfg.search_in == "replica" else None
    shards = [] if local is not None else start_shards(cfg, catalog.n_groups, partitions, name_prefix, reuse)
    dual = start_dual(policy, shards, state, name_prefix, reuse)
    ray.get([s.ready.remote() for s in shards] + [dual.ready.remote()])
    return RetrievalActors(shards, dual, Coordinator(shards, dual, catalog.item_groups, local=local))
