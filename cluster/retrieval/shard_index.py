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
``fetch_by`` (below).

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

``fetch_by`` is how an approximate index fetches its candidates:

- ``per_group`` (the IVF kinds' default): every inverted list holds items of one group only.
  Each group's items are clustered on their own (plain k-means, about nlist·n_g/n lists for a
  group of n_g items), and the lists are probed by ⟨e_u, c_l⟩ − μ_{g(l)}, c_l being the list's
  mean, so the probed lists follow the adjusted score whatever μ is, and adding a constant to
  every μ changes nothing. The index holds [e_i ; B·onehot(g_i)], its quantizer
  [c_l ; B·onehot(g_l)], and is queried with [e_u ; −μ/B]: inner products are s − μ_g, in the
  lists and at the quantizer, so nothing is rebuilt when μ moves. Built through an L2
  quantizer, where another group's list lies 2B² further, FAISS puts every item in its own
  group's nearest list; ``ivf_rq`` encodes residuals from those centroids, whose group columns
  are then exactly zero.
- ``adjusted``: FAISS trains the lists over [e_i ; c·onehot(g_i)] (c the items' RMS norm) and
  is queried with [e_u ; −μ/c]. Its spherical k-means normalises the centroids, so the probe
  weighs μ by each list's norm and group mix: recall drops at small μ and under a constant
  shift of μ (jobs/bench_index.py --mu-sweep).
- ``relevance`` (HNSW's default): by ⟨e_u, e_i⟩ alone, which misses more the further μ lifts a
  group whose items rank low by relevance.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Literal

import faiss
import numpy as np
from faiss.contrib.ivf_tools import replace_ivf_quantizer

IndexKind = Literal["flat", "ivf", "ivf_rq", "hnsw"]
INDEX_KINDS: tuple[str, ...] = ("flat", "ivf", "ivf_rq", "hnsw")
FetchBy = Literal["relevance", "adjusted", "per_group"]
FETCH_WAYS: tuple[str, ...] = ("relevance", "adjusted", "per_group")
# The IVF kinds fetch per group: over a sweep of μ (jobs/bench_index.py --mu-sweep) it is the only
# way whose recall holds at small and at large μ alike. HNSW's graph over the group columns
# gained at 200K x 64 but lost on a small 24-d catalogue (0.95 -> 0.76), so it fetches by
# relevance unless asked; per_group is an IVF layout.
DEFAULT_FETCH_BY: dict[str, FetchBy] = {
    "flat": "relevance",
    "ivf": "per_group",
    "ivf_rq": "per_group",
    "hnsw": "relevance",
}
RQ_MIN_ITEMS = 1024
# IndexSettings fields read only at search time: an index built with any of them serves all.
SEARCH_SETTINGS = ("nprobe", "overfetch", "ef_search")


@dataclass(frozen=True)
class Hits:
    """items (N, K) global item ids (−1 = none), scores (N, K) relevance s, adjusted (N, K) s − μ_g;
    each row sorted by adjusted score, best first."""

    items: np.ndarray
    scores: np.ndarray
    adjusted: np.ndarray


@dataclass(frozen=True)
class IndexSettings:
    """How a shard indexes its partition: the kind, and the settings of that kind (the others
    are not read). ``IndexSettings(**RetrievalConfig.shard_index_settings())`` is the config's.

    - ivf, ivf_rq: ``nlist``, ``nprobe``, ``overfetch``; ivf_rq also ``rq_m``, ``train_size``.
    - hnsw: ``hnsw_m``, ``ef_construction``, ``ef_search``, ``overfetch``.
    - ``fetch_by``: how an approximate kind fetches its candidates (None: the kind's default).
    """

    kind: IndexKind = "flat"
    nlist: int = 16
    nprobe: int = 4
    overfetch: int = 4
    rq_m: int = 64
    train_size: int = 65_536
    hnsw_m: int = 32
    ef_construction: int = 80
    ef_search: int = 256
    fetch_by: FetchBy | None = None


class ShardIndex:
    def __init__(
        self,
        item_ids: np.ndarray,
        vectors: np.ndarray,
        groups: np.ndarray,
        n_groups: int,
        settings: IndexSettings = IndexSettings(),
        *,
        seed: int = 0,
    ):
        """``seed``: of per_group's k-means and of ivf_rq's training sample."""
        faiss.omp_set_num_threads(1)  # many shard actors share the machine's cores
        kind = settings.kind
        if kind not in INDEX_KINDS:
            raise ValueError(f"unknown index kind {kind!r}; expected one of {INDEX_KINDS}")
        self.item_ids = np.asarray(item_ids, dtype=np.int64)
        self.groups = np.asarray(groups, dtype=np.int64)
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        self.mu = np.zeros(n_groups, dtype=np.float32)
        self.dim = vectors.shape[1]
        # flat ranks by s − μ exactly already; the group columns are for the approximate kinds.
        self.fetch_by = _fetch_way(kind, settings.fetch_by)
        vectors_in, self.group_scale = vectors, 0.0
        if self.fetch_by == "adjusted":
            vectors_in, self.group_scale = _with_group_columns(vectors, self.groups, n_groups, _rms_norm(vectors))
        centroids = None
        if self.fetch_by == "per_group":
            centroids, self.group_scale = _group_centroids(vectors, self.groups, n_groups, settings.nlist, seed)
            vectors_in, _ = _with_group_columns(vectors, self.groups, n_groups, self.group_scale)
        self.kind = kind
        self.overfetch = settings.overfetch
        self.min_candidates = 0  # hnsw: its search beam
        self._nlist_asked = 0  # ivf, ivf_rq: the nlist asked for (nprobe is a share of it)
        # flat: IndexFlatIP; hnsw: IndexHNSWFlat; ivf, ivf_rq: an IndexIVF (found by extract_index_ivf)
        self.index: faiss.Index
        # self.vectors: the exact float vectors, row i = item_ids[i]. Where the index holds them
        # row by row (flat, hnsw) it is a view of the index's own buffer, not a second copy.
        if kind == "flat":
            self._build_flat(vectors)
        elif kind == "hnsw":
            self._build_hnsw(vectors_in, settings)
        else:
            self._build_ivf(vectors_in, settings, seed, centroids)
            self.vectors = vectors

    def _build_flat(self, vectors: np.ndarray) -> None:
        n, dim = vectors.shape
        self.index = faiss.IndexFlatIP(dim + 1)
        self.index.add(np.hstack([vectors, np.zeros((n, 1), dtype=np.float32)]))
        self.vectors = self._stored()[:, :dim]

    def _build_hnsw(self, vectors: np.ndarray, settings: IndexSettings) -> None:
        n, dim = vectors.shape
        index = faiss.IndexHNSWFlat(dim, settings.hnsw_m, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = settings.ef_construction
        index.hnsw.efSearch = settings.ef_search
        index.add(vectors)
        self.index = index
        self.min_candidates = settings.ef_search
        self.vectors = self._hnsw_rows()

    def _hnsw_rows(self) -> np.ndarray:
        """The float vectors an HNSWFlat index holds, as a view of its own buffer."""
        assert isinstance(self.index, faiss.IndexHNSW), f"only hnsw keeps its rows in a graph, not {self.kind!r}"
        storage = faiss.downcast_index(self.index.storage)
        # downcast_index is typed as returning the base Index; an HNSWFlat stores its rows in an IndexFlat.
        assert isinstance(storage, faiss.IndexFlat), f"HNSWFlat storage is {type(storage).__name__}"
        n, width = storage.ntotal, storage.d
        return faiss.rev_swig_ptr(storage.get_xb(), n * width).reshape(n, width)[:, : self.dim]

    def _build_ivf(
        self, vectors: np.ndarray, settings: IndexSettings, seed: int, centroids: np.ndarray | None = None
    ) -> None:
        """``centroids``: the lists, given (per_group); None: FAISS's own k-means makes them."""
        n, dim = vectors.shape
        asked, nlist = settings.nlist, len(centroids) if centroids is not None else min(settings.nlist, n)
        # FAISS assigns items to lists through the quantizer (when adding, and for the residuals
        # it trains codebooks on). Given centroids, that is by L2 while building: the k-means
        # partition, each item in its own group's nearest list. By inner product the largest
        # centroid would take most of a group lying away from the origin.
        self._quantizer = faiss.IndexFlatL2(dim) if centroids is not None else faiss.IndexFlatIP(dim)
        if centroids is not None:
            self._quantizer.add(centroids)
        if settings.kind == "ivf_rq" and n >= RQ_MIN_ITEMS:
            self.index = faiss.index_factory(dim, f"IVF{nlist},RQ{settings.rq_m}x4fs", faiss.METRIC_INNER_PRODUCT)
            # index_factory is typed as returning the base Index; FAISS returns the built class, an IVF one.
            assert isinstance(self.index, faiss.IndexIVF), f"IVF factory built {type(self.index).__name__}"
            if centroids is not None:
                replace_ivf_quantizer(self.index, self._quantizer)
                # codes of x − c_l (its group columns are 0), scored as ⟨q, c_l⟩ (which carries
                # −μ_g) plus the code's
                self.index.by_residual = True
            # RQ training encodes every sample with a beam search, stage by stage: bound it
            train_size = settings.train_size
            rows = np.random.default_rng(seed).choice(n, train_size, replace=False) if n > train_size else None
            self.index.train(vectors if rows is None else vectors[np.sort(rows)])
        else:
            # the IVF index does not own self._quantizer: the shard keeps it alive
            self.index = faiss.IndexIVFFlat(self._quantizer, dim, nlist, faiss.METRIC_INNER_PRODUCT)
            self.index.train(vectors)  # a quantizer that holds nlist centroids already is kept as it is
        self.index.add(vectors)
        if centroids is not None:
            # queries probe the lists by ⟨q, c_l⟩ − μ_{g(l)}: the same centroids, by inner product
            self._quantizer = faiss.IndexFlatIP(dim)
            self._quantizer.add(centroids)
            replace_ivf_quantizer(self.index, self._quantizer)
        self._nlist_asked = min(asked, n)
        self.set_nprobe(settings.nprobe)

    def set_search_settings(self, settings: IndexSettings) -> None:
        """The settings read only when searching (``SEARCH_SETTINGS``), applied to a built index:
        an index stored with others answers as if built with these."""
        self.overfetch = settings.overfetch
        if self.kind in ("ivf", "ivf_rq"):
            self.set_nprobe(settings.nprobe)
        elif self.kind == "hnsw":
            assert isinstance(self.index, faiss.IndexHNSW), f"hnsw's index is {type(self.index).__name__}"
            self.index.hnsw.efSearch = settings.ef_search
            self.min_candidates = settings.ef_search

    def set_nprobe(self, nprobe: int) -> None:
        """Lists scanned per query from now on (IVF kinds): a benchmark sweeps it on one build.
        It is ``nprobe`` of the ``nlist`` asked for; per_group, which gives every group with items
        a list of its own, may hold a few more lists and scans the same share of them."""
        if self.kind not in ("ivf", "ivf_rq"):
            raise ValueError(f"nprobe is an IVF setting; this shard's index is {self.kind!r}")
        ivf = faiss.extract_index_ivf(self.index)
        share = ivf.nlist / self._nlist_asked
        ivf.nprobe = min(ivf.nlist, max(1, round(nprobe * share)))

    def _stored(self) -> np.ndarray:
        """The flat index's own (n, d+1) buffer, writable in place."""
        assert isinstance(self.index, faiss.IndexFlat), f"only flat keeps its rows in one buffer, not {self.kind!r}"
        n, width = self.index.ntotal, self.index.d
        return faiss.rev_swig_ptr(self.index.get_xb(), n * width).reshape(n, width)

    def set_mu(self, mu: np.ndarray) -> None:
        """Flat: rewrite only the last coordinate of the stored vectors, in place in FAISS's own
        buffer (one strided column write instead of re-adding the whole partition). Approximate
        kinds: nothing to rewrite, μ is applied when the candidates are re-scored."""
        self.mu = np.asarray(mu, dtype=np.float32).copy()
        if self.kind == "flat":
            self._stored()[:, -1] = -self.mu[self.groups]

    def to_arrays(self) -> dict[str, np.ndarray]:
        """The built index as arrays (``from_arrays`` reads them back): FAISS's own serialization
        of the index, the items, and the float vectors an IVF kind re-scores with. μ is not kept:
        it belongs to the dual-vector actor, and arrives with the next query."""
        state = {
            "kind": self.kind,
            "fetch_by": self.fetch_by,
            "group_scale": self.group_scale,
            "overfetch": self.overfetch,
            "min_candidates": self.min_candidates,
            "nlist_asked": self._nlist_asked,
            "n_groups": len(self.mu),
            "dim": self.dim,
        }
        arrays: dict[str, np.ndarray] = {
            "state": np.frombuffer(json.dumps(state).encode(), dtype=np.uint8),
            # serialize_index is typed loosely; FAISS returns the bytes as a uint8 array.
            "faiss_index": np.asarray(faiss.serialize_index(self.index), dtype=np.uint8),
            "item_ids": self.item_ids,
            "groups": self.groups,
        }
        if self.kind in ("ivf", "ivf_rq"):
            arrays["vectors"] = np.ascontiguousarray(self.vectors)
        return arrays

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray]) -> "ShardIndex":
        """The index ``to_arrays`` wrote, searchable at once with μ = 0: nothing is trained or added."""
        faiss.omp_set_num_threads(1)
        state = json.loads(bytes(arrays["state"]).decode())
        shard = cls.__new__(cls)
        shard.kind, shard.fetch_by = state["kind"], state["fetch_by"]
        shard.group_scale, shard.overfetch = float(state["group_scale"]), int(state["overfetch"])
        shard.min_candidates, shard.dim = int(state["min_candidates"]), int(state["dim"])
        shard.item_ids = np.asarray(arrays["item_ids"], dtype=np.int64)
        shard.groups = np.asarray(arrays["groups"], dtype=np.int64)
        shard.mu = np.zeros(int(state["n_groups"]), dtype=np.float32)
        shard.index = faiss.deserialize_index(np.ascontiguousarray(arrays["faiss_index"], dtype=np.uint8))
        if shard.index.ntotal != len(shard.item_ids):
            raise ValueError(f"the FAISS index holds {shard.index.ntotal} items, the file lists {len(shard.item_ids)}")
        if shard.kind == "flat":
            shard.vectors = shard._stored()[:, : shard.dim]
        elif shard.kind == "hnsw":
            shard.vectors = shard._hnsw_rows()
        else:
            shard.vectors = np.asarray(arrays["vectors"], dtype=np.float32)
        shard._nlist_asked = int(state["nlist_asked"])
        shard.set_mu(shard.mu)  # flat keeps −μ in its rows: the file's may be another's
        return shard

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
        # exclude is None only with extra 0; the test says so to the type checker.
        return hits if exclude is None or not extra else _drop_excluded(hits, exclude, k)

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


def _fetch_way(kind: str, fetch_by: str | None) -> str:
    way = fetch_by or DEFAULT_FETCH_BY[kind]
    if way not in FETCH_WAYS:
        raise ValueError(f"unknown fetch_by {way!r}; expected one of {FETCH_WAYS}")
    if way == "per_group" and kind == "hnsw":
        raise ValueError("fetch_by='per_group' lays out inverted lists: it is for ivf and ivf_rq, not hnsw")
    return "relevance" if kind == "flat" else way


def _rms_norm(vectors: np.ndarray) -> float:
    """The items' RMS norm (1 when every vector is zero)."""
    return float(np.sqrt(np.mean(np.sum(vectors.astype(np.float64) ** 2, axis=1)))) or 1.0


def _with_group_columns(
    vectors: np.ndarray, groups: np.ndarray, n_groups: int, scale: float
) -> tuple[np.ndarray, float]:
    """[e_i ; scale·onehot(g_i)] and scale."""
    onehot = np.zeros((len(vectors), n_groups), dtype=np.float32)
    onehot[np.arange(len(vectors)), groups] = scale
    return np.ascontiguousarray(np.hstack([vectors, onehot]), dtype=np.float32), scale


def lists_per_group(counts: np.ndarray, nlist: int) -> np.ndarray:
    """About nlist lists shared in proportion to each group's item count (largest remainders),
    at least one for a group that has items, never more lists than items."""
    counts = np.asarray(counts, dtype=np.int64)
    total = min(nlist, int(counts.sum()))
    quota = total * counts / max(int(counts.sum()), 1)
    lists = np.floor(quota).astype(np.int64)
    lists[np.argsort(-(quota - lists), kind="stable")[: total - int(lists.sum())]] += 1
    return np.minimum(np.maximum(lists, (counts > 0).astype(np.int64)), counts)


def _group_centroids(
    vectors: np.ndarray, groups: np.ndarray, n_groups: int, nlist: int, seed: int
) -> tuple[np.ndarray, float]:
    """per_group's lists: [c_l ; B·onehot(g_l)] for each group's k-means centroids, and B.
    Plain (not spherical) k-means: a centroid is its list's mean, so ⟨e_u, c_l⟩ is the list's
    mean score, on the same scale as the μ it is compared with across groups."""
    counts = np.bincount(groups, minlength=n_groups)
    centroid_parts: list[np.ndarray] = []
    owner_parts: list[np.ndarray] = []
    for group, n_lists in enumerate(lists_per_group(counts, nlist)):
        if n_lists:
            kmeans = faiss.Kmeans(vectors.shape[1], int(n_lists), seed=seed + group)
            kmeans.train(vectors[groups == group])
            assert kmeans.centroids is not None, "Kmeans.train sets the centroids"
            centroid_parts.append(kmeans.centroids)
            owner_parts.append(np.full(int(n_lists), group))
    centroids, owners = np.vstack(centroid_parts), np.concatenate(owner_parts)
    # another group's list is 2B² further away: B² above max ‖e_i − c_l‖² keeps every item in its own
    bound = float(np.linalg.norm(vectors, axis=1).max() + np.linalg.norm(centroids, axis=1).max())
    scale = float(np.sqrt(bound**2 + 1.0))
    return _with_group_columns(centroids, owners, n_groups, scale)


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
