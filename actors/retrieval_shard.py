"""Retrieval shard actor ``shard-<i>``: one FAISS partition, searched on its own."""

from __future__ import annotations

import numpy as np

from cluster.retrieval.partitions import Partition
from cluster.retrieval.shard_index import Hits, IndexSettings, ShardIndex
from cluster.retrieval.wire import pack_hits, unpack_query
from cluster.storage import Storage


class RetrievalShard:
    """Plain class; restart-safe: the partition is reloaded from its file in the storage (on
    whichever node the shard restarts) and μ is pushed again by the dual-vector actor (or sent
    with the next query)."""

    def __init__(self, name: str, partitions: Storage, n_groups: int, settings: IndexSettings):
        """``settings``: how the partition is indexed (``start_shards`` reads them from the retriever's config)."""
        import torch

        torch.set_num_threads(1)
        self.name = name
        partition = Partition.load(partitions, f"{name}.npz")
        self.index = ShardIndex(partition.item_ids, partition.vectors, partition.groups, n_groups, settings)
        self.mu_version = -1  # any μ the dual-vector actor holds, version 0 included, is newer

    def ready(self) -> dict:
        return {"name": self.name, "items": len(self.index.item_ids), "mu_version": self.mu_version}

    def set_mu(self, mu: np.ndarray, version: int) -> int:
        if version > self.mu_version:
            self.index.set_mu(mu)
            self.mu_version = version
        return self.mu_version

    def forget_mu(self) -> None:
        """Back to μ = 0 at no version, for a new dual-vector actor whose versions start again at 0."""
        self.index.set_mu(np.zeros_like(self.index.mu))
        self.mu_version = -1

    def search(
        self, queries: np.ndarray, k: int, mu: np.ndarray, version: int, exclude: list[np.ndarray] | None = None
    ) -> tuple[Hits, int]:
        """Top-k by s − μ_g; a newer μ carried by the query is applied first."""
        self.set_mu(mu, version)
        return self.index.search(queries, k, exclude), self.mu_version

    def search_packed(self, query: bytes) -> bytes:
        """``search`` over the wire format of ``cluster/retrieval/wire.py`` (the serving path)."""
        queries, k, mu, version = unpack_query(query, len(self.index.mu))
        self.set_mu(mu, version)
        return pack_hits(self.index.search(queries, k), self.mu_version)

    def pid(self) -> int:
        import os

        return os.getpid()
