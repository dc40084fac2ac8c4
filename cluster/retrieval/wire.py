"""The shard search as it travels between processes: one bytes object each way.

Ray serializes every numpy array of a call on its own (pickle 5, a buffer per array), and at a
batch of one query that per-array cost outweighs the FAISS search itself: a shard call carrying
the queries and μ and returning three (N, K) arrays took 1.02 ms on two cores where the same call
with one bytes object each way took 0.76 ms. So the query batch, k, μ and its version go as one
buffer, and the hits and the shard's μ version come back as one.

Layout (little-endian, native numpy dtypes):

- query: header int64[4] = (n, dim, k, version), then n_groups float64 μ, then n·dim float32;
- hits: header int64[3] = (n, k, version), then int64 items, float32 scores, float32 adjusted.
"""

from __future__ import annotations

import numpy as np

from cluster.retrieval.shard_index import Hits

_QUERY_HEADER = 4
_HITS_HEADER = 3


def pack_query(queries: np.ndarray, k: int, mu: np.ndarray, version: int) -> bytes:
    queries = np.ascontiguousarray(queries, dtype=np.float32)
    n, dim = queries.shape
    header = np.array([n, dim, k, version], dtype=np.int64)
    return header.tobytes() + np.asarray(mu, dtype=np.float64).tobytes() + queries.tobytes()


def unpack_query(blob: bytes, n_groups: int) -> tuple[np.ndarray, int, np.ndarray, int]:
    """(queries (n, dim) float32, k, μ (n_groups,) float64, version)."""
    n, dim, k, version = (int(v) for v in np.frombuffer(blob, dtype=np.int64, count=_QUERY_HEADER))
    offset = 8 * _QUERY_HEADER
    mu = np.frombuffer(blob, dtype=np.float64, count=n_groups, offset=offset)
    queries = np.frombuffer(blob, dtype=np.float32, count=n * dim, offset=offset + 8 * n_groups).reshape(n, dim)
    return queries, k, mu, version


def pack_hits(hits: Hits, version: int) -> bytes:
    n, k = hits.items.shape
    return (
        np.array([n, k, version], dtype=np.int64).tobytes()
        + np.ascontiguousarray(hits.items, dtype=np.int64).tobytes()
        + np.ascontiguousarray(hits.scores, dtype=np.float32).tobytes()
        + np.ascontiguousarray(hits.adjusted, dtype=np.float32).tobytes()
    )


def unpack_hits(blob: bytes) -> tuple[Hits, int]:
    """(hits, the μ version the shard searched with); the arrays are read-only views of ``blob``."""
    n, k, version = (int(v) for v in np.frombuffer(blob, dtype=np.int64, count=_HITS_HEADER))
    size, offset = n * k, 8 * _HITS_HEADER
    items = np.frombuffer(blob, dtype=np.int64, count=size, offset=offset).reshape(n, k)
    offset += 8 * size
    scores = np.frombuffer(blob, dtype=np.float32, count=size, offset=offset).reshape(n, k)
    adjusted = np.frombuffer(blob, dtype=np.float32, count=size, offset=offset + 4 * size).reshape(n, k)
    return Hits(items, scores, adjusted), version
