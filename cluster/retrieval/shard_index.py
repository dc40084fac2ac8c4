"""One retrieval shard: a FAISS index over a partition of the item vectors that returns the
local top-K by FairSync's adjusted score s − μ_{g(i)}, and the merge of shards' answers.

``flat`` is exact: items are stored as [e_i ; −μ_{g(i)}] and queries as [e_u ; 1], so the
adjusted score is one inner product. When μ changes only that last coordinate is rewritten (one
column instead of FairSync code's |G| extra one-hot dimensions).

The approximate kinds share one path. The index is asked for ``overfetch``·K candidates, and
the candidates are re-scored exactly, ⟨e_u, e_i⟩ − μ_{g(i)}, against the float vectors the shard
keeps. Every returned score is therefore exact, and the returned set is the exact top-K whenever
the true top-K by s − μ lies among the candidates: guaranteed when overfetch·K ≥ the partition
size, and otherwise as likely as the index's own recall allows. How candidates are fetched is
``fetch_by`` (below): by s − μ (IVF kinds' default), or by plain relevance ⟨e_u, e_i⟩ (HNSW's),
which misses more the further μ lifts a group whose items rank low by relevance alone.

- ``ivf``: IndexIVFFlat, ``nlist`` lists of float vectors, ``nprobe`` of them scanned.
- ``ivf_rq``: the same inverted lists holding residual-quantized codes, ``rq_m`` codebooks of
  4 bits each (rq_m / 2 bytes per item), scanned with FAISS's SIMD fast-scan look-up tables;
  trained on at most ``train_size`` sampled vectors. FAISS's 8-bit RQ scanner recomputes its
  whole look-up table for every probed list under inner product, which made it slower than
  ``flat`` at useful recall. A partition of fewer than ``RQ_MIN_ITEMS`` items (too few to train
  codebooks on) keeps float lists, as ``ivf`` does.
- ``hnsw``: IndexHNSWFlat, ``hnsw_m`` links per node, ``ef_construction`` when built,
  ``ef_search`` when searched. The whole search beam is re-scored: never fewer than ef_search
  candidates, since the graph search holds them anyway.

``fetch_by="adjusted"`` makes an approximate index fetch by s − μ as well: it indexes
[e_i ; c·onehot(g_i)] and is queried with [e_u ; −μ/c], whose inner product is exactly
s − μ_{g(i)} for any μ, so nothing is rebuilt when μ moves (FairSync code's one-hot trick, used
for candidates only). c is the items' RMS norm, so the group columns weigh like the rest of a
vector in the lists' centroids, codebooks and graph. Without it a group that μ lifts far has its
true top-K items outside the candidates, and recall falls with μ.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import faiss
import numpy as np

IndexKind = Literal["flat", "ivf", "ivf_rq", "hnsw"]
INDEX_KINDS: tuple[str, ...] = ("flat", "ivf", "ivf_rq", "hnsw")
FetchBy = Literal["relevance", "adjusted"]
# Measured (README, "Shard index kinds"): the group columns lift IVF's recall under a large μ
# (0.90 -> 0.97 at 200K items) at ~0.85x its speed; HNSW's graph on them gained at 200K x 64 but
# lost on a small 24-d catalogue (0.95 -> 0.76), so it fetches by relevance unless asked.
DEFAULT_FETCH_BY: dict[str, FetchBy] = {"flat": "relevance", "ivf": "adjusted", "ivf_rq": "adjusted",
                                        "hnsw": "relevance"}
RQ_MIN_ITEMS = 1024


@dataclass(frozen=True)
class Hits:
    """items (N, K) global item ids (−1 = none), scores (N, K) relevance s, adjusted (N, K) s − μ_g;
    each row sorted by adjusted score, best first."""

    items: np.ndarray
    scores: np.ndarray
    adjusted: np.ndarray


class ShardIndex:
    def __init__(self, item_ids: np.ndarray, vectors: np.ndarray, groups: np.ndarray, n_groups: int,
                 kind: IndexKind = "flat", nlist: int = 16, nprobe: int = 4, overfetch: int = 4, *,
                 rq_m: int = 64, train_size: int = 65_536, hnsw_m: int = 32, ef_construction: int = 80,
                 ef_search: int = 256, seed: int = 0, fetch_by: FetchBy | None = None):
        faiss.omp_set_num_threads(1)  # many shard actors share the machine's cores
        if kind not in INDEX_KINDS:
            raise ValueError(f"unknown index kind {kind!r}; expected one of {INDEX_KINDS}")
        self.item_ids = np.asarray(item_ids, dtype=np.int64)
        self.groups = np.asarray(groups, dtype=np.int64)
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        self.mu = np.zeros(n_groups, dtype=np.float32)
        self.dim = vectors.shape[1]
        # flat ranks by s − μ exactly already; the group columns are for the approximate kinds.
        adjusted = (fetch_by or DEFAULT_FETCH_BY[kind]) == "adjusted" and kind != "flat"
        vectors_in, self.group_scale = _with_group_columns(vectors, self.groups, n_groups) if adjusted else (vectors, 0.0)
        self.kind = kind
        self.overfetch = overfetch
        self.min_candidates = 0  # hnsw: its search beam
        # self.vectors: the exact float vectors, row i = item_ids[i]. Where the index holds them
        # row by row (flat, hnsw) it is a view of the index's own buffer, not a second copy.
        if kind == "flat":
            self._build_flat(vectors)
        elif kind == "hnsw":
            self._build_hnsw(vectors_in, hnsw_m, ef_construction, ef_search)
        else:
            self._build_ivf(vectors_in, kind, nlist, nprobe, rq_m, train_size, seed)
            self.vectors = vectors

    def _build_flat(self, vectors: np.ndarray) -> None:
        n, dim = vectors.shape
        self.index = faiss.IndexFlatIP(dim + 1)
        self.index.add(np.hstack([vectors, np.zeros((n, 1), dtype=np.float32)]))
        self.vectors = self._stored()[:, :dim]

    def _build_hnsw(self, vectors: np.ndarray, hnsw_m: int, ef_construction: int, ef_search: int) -> None:
        n, dim = vectors.shape
        self.index = faiss.IndexHNSWFlat(dim, hnsw_m, faiss.METRIC_INNER_PRODUCT)
        self.index.hnsw.efConstruction = ef_construction
        self.index.hnsw.efSearch = ef_search
        self.index.add(vectors)
        self.min_candidates = ef_search
        storage = faiss.downcast_index(self.index.storage)
        self.vectors = faiss.rev_swig_ptr(storage.get_xb(), n * dim).reshape(n, dim)[:, : self.dim]

    def _build_ivf(self, vectors: np.ndarray, kind: str, nlist: int, nprobe: int, rq_m: int, train_size: int,
                   seed: int) -> None:
        n, dim = vectors.shape
        nlist = min(nlist, n)
        if kind == "ivf_rq" and n >= RQ_MIN_ITEMS:
            self.index = faiss.index_factory(dim, f"IVF{nlist},RQ{rq_m}x4fs", faiss.METRIC_INNER_PRODUCT)
            # RQ training encodes every sample with a beam search, stage by stage: bound it
            rows = np.random.default_rng(seed).choice(n, train_size, replace=False) if n > train_size else None
            self.index.train(vectors if rows is None else vectors[np.sort(rows)])
        else:
            self._quantizer = faiss.IndexFlatIP(dim)  # keep it alive: the IVF index does not own it
            self.index = faiss.IndexIVFFlat(self._quantizer, dim, nlist, faiss.METRIC_INNER_PRODUCT)
            self.index.train(vectors)
        self.index.add(vectors)
        faiss.extract_index_ivf(self.index).nprobe = min(nprobe, nlist)

    def set_nprobe(self, nprobe: int) -> None:
        """Lists scanned per query from now on (IVF kinds): a benchmark sweeps it on one build."""
        if self.kind not in ("ivf", "ivf_rq"):
            raise ValueError(f"nprobe is an IVF setting; this shard's index is {self.kind!r}")
        ivf = faiss.extract_index_ivf(self.index)
        ivf.nprobe = min(nprobe, ivf.nlist)

    def _stored(self) -> np.ndarray:
        """The flat index's own (n, d+1) buffer, writable in place."""
        n, width = self.index.ntotal, self.index.d
        return faiss.rev_swig_ptr(self.index.get_xb(), n * width).reshape(n, width)

    def set_mu(self, mu: np.ndarray) -> None:
        """Flat: rewrite only the last coordinate of the stored vectors, in place in FAISS's own
        buffer (one strided column write instead of re-adding the whole partition). Approximate
        kinds: nothing to rewrite, μ is applied when the candidates are re-scored."""
        self.mu = np.asarray(mu, dtype=np.float32).copy()
        if self.kind == "flat":
            self._stored()[:, -1] = -self.mu[self.groups]

    def memory_bytes(self) -> dict[str, int]:
        """What the shard holds: the FAISS index (serialized size) and the float vectors kept for
        the exact re-score where they are not inside the index already (flat and hnsw: 0)."""
        index = int(faiss.serialize_index(self.index).nbytes)
        own = 0 if self.kind in ("flat", "hnsw") else int(self.vectors.nbytes)
        return {"index": index, "vectors": own, "total": index + own}

    def search(self, queries: np.ndarray, k: int, exclude: list[np.ndarray] | None = None) -> Hits:
        """Top-k by s − μ_g per query; ``exclude[q]`` lists item ids query q must not get (items
        the user already has). The index is asked for k more than the most excluded items of
        this partition any query has, so k survivors always remain when they exist."""
        queries = np.ascontiguousarray(queries, dtype=np.float32)
        extra = 0
        if exclude is not None:
            exclude = [np.asarray(e, dtype=np.int64) for e in exclude]
            extra = max((int(np.isin(e, self.item_ids).sum()) for e in exclude), default=0)
        hits = self._search(queries, min(k + extra, len(self.item_ids)))
        return hits if not extra else _drop_excluded(hits, exclude, k)

    def _search(self, queries: np.ndarray, k_local: int) -> Hits:
        if self.kind == "flat":
            augmented = np.hstack([queries, np.ones((len(queries), 1), dtype=np.float32)])
            adjusted, rows = self.index.search(augmented, k_local)
        else:
            rows, adjusted = self._rescore(queries, self.candidates(queries, k_local), k_local)
        found = rows >= 0
        safe_rows = np.where(found, rows, 0)
        adjusted = np.where(found, adjusted, -np.inf).astype(np.float32)
        relevance = np.where(found, adjusted + self.mu[self.groups[safe_rows]], -np.inf).astype(np.float32)
        return Hits(np.where(found, self.item_ids[safe_rows], -1), relevance, adjusted)

    def candidates(self, queries: np.ndarray, k_local: int) -> np.ndarray:
        """Approximate kinds: the rows (N, overfetch·k_local or the beam; −1 = none) the index
        fetches for re-scoring. Public so a benchmark can time the fetch apart from the re-score."""
        wanted = max(self.overfetch * k_local, self.min_candidates)
        _, rows = self.index.search(self._fetch_queries(queries), min(len(self.item_ids), wanted))
        return rows

    def _fetch_queries(self, queries: np.ndarray) -> np.ndarray:
        """What the approximate index is queried with: e_u, or [e_u ; −μ/c] when it holds the
        group columns, so that it ranks candidates by s − μ_g."""
        if not self.group_scale:
            return queries
        shift = np.broadcast_to(-self.mu / self.group_scale, (len(queries), len(self.mu)))
        return np.ascontiguousarray(np.hstack([queries, shift]), dtype=np.float32)

    def _rescore(self, queries: np.ndarray, candidates: np.ndarray, k_local: int) -> tuple[np.ndarray, np.ndarray]:
        """Every approximate kind: the exact s − μ_g of each candidate row (−1 = none), from the
        kept float vectors, and each query's best k_local of them: (rows, adjusted scores)."""
        valid = candidates >= 0
        safe = np.where(valid, candidates, 0)
        rescored = np.einsum("nd,nkd->nk", queries, self.vectors[safe]) - self.mu[self.groups[safe]]
        rescored[~valid] = -np.inf
        order = np.argsort(-rescored, axis=1, kind="stable")[:, :k_local]
        rows = np.take_along_axis(np.where(valid, candidates, -1), order, axis=1)
        return rows, np.take_along_axis(rescored, order, axis=1)


def _with_group_columns(vectors: np.ndarray, groups: np.ndarray, n_groups: int) -> tuple[np.ndarray, float]:
    """[e_i ; c·onehot(g_i)] and c, the items' RMS norm (1 when every vector is zero)."""
    scale = float(np.sqrt(np.mean(np.sum(vectors.astype(np.float64) ** 2, axis=1)))) or 1.0
    onehot = np.zeros((len(vectors), n_groups), dtype=np.float32)
    onehot[np.arange(len(vectors)), groups] = scale
    return np.hstack([vectors, onehot]), scale


def _drop_excluded(hits: Hits, exclude: list[np.ndarray], k: int) -> Hits:
    """Each row's first k hits that are not excluded (order kept; −1 / −inf pad)."""
    n = len(hits.items)
    items = np.full((n, k), -1, dtype=np.int64)
    scores = np.full((n, k), -np.inf, dtype=np.float32)
    adjusted = np.full((n, k), -np.inf, dtype=np.float32)
    for q in range(n):
        keep = np.flatnonzero(~np.isin(hits.items[q], exclude[q]) & (hits.items[q] >= 0))[:k]
        items[q, : len(keep)] = hits.items[q, keep]
        scores[q, : len(keep)] = hits.scores[q, keep]
        adjusted[q, : len(keep)] = hits.adjusted[q, keep]
    return Hits(items, scores, adjusted)


def merge_top_k(parts: list[Hits], k: int) -> Hits:
    """The global top-K by adjusted score from each shard's local top-K (exact: every global
    top-K item is in its own shard's top-K). Ties break by item id for a stable answer."""
    items = np.concatenate([p.items for p in parts], axis=1)
    scores = np.concatenate([p.scores for p in parts], axis=1)
    adjusted = np.concatenate([p.adjusted for p in parts], axis=1)
    order = np.lexsort((items, -adjusted), axis=1)[:, :k] if items.size else np.zeros((len(items), 0), int)
    take = lambda a: np.take_along_axis(a, order, axis=1)  # noqa: E731
    return Hits(take(items), take(scores), take(adjusted))
