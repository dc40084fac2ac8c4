"""Every partition's index in the calling process: the fair retriever's search inside its Serve
replica, with no Ray call per batch.

A fan-out to shard actors costs one call per shard for every batch, and on a small machine Ray's
work on those calls (submitting, sending, scheduling, answering) is most of a batch's CPU,
several times the search itself. A catalogue that fits in a replica's memory is searched where
the request already is. Each partition of an approximate kind keeps its own index, built with the
same settings and seed as a shard actor would build it, so the answers are the same lists either
way. ``flat`` is exact: one index over every partition's items answers what the partitions'
merged answers would, with one FAISS call instead of one per partition. Shard actors remain for
catalogues larger than a replica should hold.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from typing import Optional

import numpy as np

from cluster.retrieval.index_store import load_or_build
from cluster.retrieval.partitions import Partition
from cluster.retrieval.shard_index import Hits, IndexSettings, ShardIndex
from cluster.storage import Storage


class LocalShards:
    """``search`` is not safe to run from two threads at once (μ is written into the indexes):
    the coordinator gives it one thread."""

    def __init__(self, indexes: list[ShardIndex], partitions: int):
        """``indexes``: one per partition, or for flat one over them all (``partitions`` of them)."""
        if not indexes:
            raise ValueError("LocalShards needs at least one index")
        self.indexes = indexes
        self.partitions = partitions
        self.mu_version = -1
        # The partitions are searched side by side too (a batch's FAISS work spread over the
        # cores, as shard actors would spread it); the answers keep the partitions' order.
        self._searchers = ThreadPoolExecutor(_threads(len(self.indexes))) if len(self.indexes) > 1 else None

    @classmethod
    def build(cls, partitions: list[Partition], n_groups: int, settings: IndexSettings) -> "LocalShards":
        """Every partition indexed here, as its shard actor would index it."""
        if not partitions:
            raise ValueError("LocalShards needs at least one partition")
        count = len(partitions)
        if settings.kind == "flat":
            partitions = [_joined(partitions)]
        # Built side by side, one per core (FAISS leaves the GIL while it trains and adds): each is
        # built from its own partition and seed alone, so the indexes do not depend on the order.
        with ThreadPoolExecutor(_threads(len(partitions))) as builders:
            indexes = list(
                builders.map(lambda p: ShardIndex(p.item_ids, p.vectors, p.groups, n_groups, settings), partitions)
            )
        return cls(indexes, count)

    @classmethod
    def load(cls, folder: Storage, shards: list[str], n_groups: int, settings: IndexSettings) -> "LocalShards":
        """The partitions ``<shard>.npz`` of ``folder``, with the indexes their shard actors
        stored there (built and stored here, side by side, where none is yet)."""
        if settings.kind == "flat":
            return cls.build([Partition.load(folder, f"{shard}.npz") for shard in shards], n_groups, settings)
        with ThreadPoolExecutor(_threads(len(shards))) as loaders:
            indexes = list(loaders.map(lambda shard: load_or_build(folder, shard, n_groups, settings)[0], shards))
        return cls(indexes, len(shards))

    def __len__(self) -> int:
        """The partitions searched (flat's are searched as one index)."""
        return self.partitions

    def set_mu(self, mu: np.ndarray, version: int) -> None:
        """Applied only when newer than the μ the indexes hold, as a shard actor does."""
        if version > self.mu_version:
            for index in self.indexes:
                index.set_mu(mu)
            self.mu_version = version

    def search(
        self, queries: np.ndarray, k: int, mu: np.ndarray, version: int, exclude: Optional[list[np.ndarray]] = None
    ) -> list[tuple[Hits, int]]:
        """Each partition's top-k by s − μ_g, with the μ version it used: what the shard actors
        would answer, for the coordinator's merge."""
        self.set_mu(mu, version)
        if self._searchers is None:
            return [(self.indexes[0].search(queries, k, exclude), self.mu_version)]
        found = self._searchers.map(lambda index: index.search(queries, k, exclude), self.indexes)
        return [(hits, self.mu_version) for hits in found]


def _threads(partitions: int) -> int:
    return max(1, min(partitions, os.cpu_count() or 1))


def _joined(partitions: list[Partition]) -> Partition:
    return Partition(
        np.concatenate([p.item_ids for p in partitions]),
        np.concatenate([p.vectors for p in partitions]),
        np.concatenate([p.groups for p in partitions]),
    )
