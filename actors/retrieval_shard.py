"""Retrieval shard actor ``shard-<i>``: one FAISS partition, searched on its own."""

from __future__ import annotations

import numpy as np

from cluster.retrieval.index_store import load_or_build
from cluster.retrieval.shard_index import Hits, IndexSettings
from cluster.retrieval.wire import pack_hits, unpack_query
from cluster.storage import Storage


class RetrievalShard:
    """Plain class; restart-safe: the partition's index is reloaded from the storage (on whichever
    node the shard restarts; built once, the first time, ``cluster/retrieval/index_store.py``)
    and μ comes again with the next query."""

    def __init__(self, name: str, partitions: Storage, n_groups: int, settings: IndexSettings):
        """``settings``: how the partition is indexed (``start_shards`` reads them from the retriever's config).
        No torch here: a shard searches with FAISS (one thread, ``ShardIndex``) and numpy, and
        importing torch would add about 180 MB to every shard process."""
        self.name = name
        self.index, self.source = load_or_build(partitions, name, n_groups, settings)
        self.mu_version = -1  # any μ the dual-vector actor holds, version 0 included, is newer

    def ready(self) -> dict:
        """Its partition's size, μ version, and whether its index was built or loaded (and in how long)."""
        return {
            "name": self.name,
            "items": len(self.index.item_ids),
            "mu_version": self.mu_version,
            "index": self.source.how,
            "index_seconds": self.source.seconds,
        }

    def memory(self) -> dict:
        """This process's peak resident memory (bytes), and what its index holds."""
        return {**process_memory(), "index_bytes": self.index.memory_bytes()}

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


def process_memory() -> dict:
    """This process's peak resident set so far, in bytes (``ru_maxrss`` is in KiB on Linux)."""
    import resource

    return {"peak_rss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024}
