"""One retrieval shard: a FAISS index over a partition of the item vectors that returns the
local top-K by FairSync's adjusted score s − μ_{g(i)}, and the merge of shards' answers.

The adjusted score is an inner product: items are stored as [e_i ; −μ_{g(i)}] and queries as
[e_u ; 1]. When μ changes only that last coordinate is rewritten (exact, and one column instead
of FairSync code's |G| extra one-hot dimensions). With IVF, the index is searched for
``overfetch``·K candidates by plain relevance (the adjusted coordinate is left at 0 there), which
are then re-scored exactly; that is exact whenever the true top-K by s − μ lies among them, which
is guaranteed when overfetch·K ≥ the partition size or when μ is 0.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import faiss
import numpy as np


@dataclass(frozen=True)
class Hits:
    """items (N, K) global item ids (−1 = none), scores (N, K) relevance s, adjusted (N, K) s − μ_g;
    each row sorted by adjusted score, best first."""

    items: np.ndarray
    scores: np.ndarray
    adjusted: np.ndarray


class ShardIndex:
    def __init__(self, item_ids: np.ndarray, vectors: np.ndarray, groups: np.ndarray, n_groups: int,
                 kind: Literal["flat", "ivf"] = "flat", nlist: int = 16, nprobe: int = 4, overfetch: int = 4):
        faiss.omp_set_num_threads(1)  # many shard actors share the machine's cores
        self.item_ids = np.asarray(item_ids, dtype=np.int64)
        self.groups = np.asarray(groups, dtype=np.int64)
        self.vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        self.mu = np.zeros(n_groups, dtype=np.float32)
        self.kind = kind
        self.overfetch = overfetch
        dim = self.vectors.shape[1]
        if kind == "flat":
            self.index = faiss.IndexFlatIP(dim + 1)
            self.index.add(self._augmented())
        elif kind == "ivf":
            quantizer = faiss.IndexFlatIP(dim)
            self.index = faiss.IndexIVFFlat(quantizer, dim, min(nlist, len(self.vectors)), faiss.METRIC_INNER_PRODUCT)
            self.index.train(self.vectors)
            self.index.add(self.vectors)
            self.index.nprobe = nprobe
            self._quantizer = quantizer  # keep it alive: the IVF index does not own it
        else:
            raise ValueError(f"unknown index kind {kind!r}; expected 'flat' or 'ivf'")

    def _augmented(self) -> np.ndarray:
        return np.hstack([self.vectors, -self.mu[self.groups][:, None]]).astype(np.float32)

    def set_mu(self, mu: np.ndarray) -> None:
        """Rewrite only the last coordinate of the stored vectors, in place in FAISS's own buffer:
        one strided column write instead of re-adding the whole partition."""
        self.mu = np.asarray(mu, dtype=np.float32).copy()
        if self.kind == "flat":
            n, width = self.index.ntotal, self.index.d
            stored = faiss.rev_swig_ptr(self.index.get_xb(), n * width).reshape(n, width)
            stored[:, -1] = -self.mu[self.groups]

    def search(self, queries: np.ndarray, k: int, exclude: list[np.ndarray] | None = None) -> Hits:
        """Top-k by s − μ_g per query; ``exclude[q]`` lists item ids query q must not get (items
        the user already has). Exact: the index is asked for k more than the most excluded
        items of this partition any query has, so k survivors always remain when they exist."""
        queries = np.ascontiguousarray(queries, dtype=np.float32)
        extra = 0
        if exclude is not None:
            exclude = [np.asarray(e, dtype=np.int64) for e in exclude]
            extra = max((int(np.isin(e, self.item_ids).sum()) for e in exclude), default=0)
        hits = self._search(queries, min(k + extra, len(self.item_ids)))
        return hits if not extra else _drop_excluded(hits, exclude, k)

    def _search(self, queries: np.ndarray, k_local: int) -> Hits:
        n = len(queries)
        if self.kind == "flat":
            augmented = np.hstack([queries, np.ones((n, 1), dtype=np.float32)])
            adjusted, rows = self.index.search(augmented, k_local)
        else:
            _, candidates = self.index.search(queries, min(len(self.item_ids), self.overfetch * k_local))
            valid = candidates >= 0
            safe = np.where(valid, candidates, 0)
            rescored = np.einsum("nd,nkd->nk", queries, self.vectors[safe]) - self.mu[self.groups[safe]]
            rescored[~valid] = -np.inf
            order = np.argsort(-rescored, axis=1, kind="stable")[:, :k_local]
            rows = np.take_along_axis(np.where(valid, candidates, -1), order, axis=1)
            adjusted = np.take_along_axis(rescored, order, axis=1)
        found = rows >= 0
        safe_rows = np.where(found, rows, 0)
        adjusted = np.where(found, adjusted, -np.inf).astype(np.float32)
        relevance = np.where(found, adjusted + self.mu[self.groups[safe_rows]], -np.inf).astype(np.float32)
        return Hits(np.where(found, self.item_ids[safe_rows], -1), relevance, adjusted)


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
