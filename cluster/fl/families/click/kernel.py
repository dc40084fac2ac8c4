"""DLRM and DIN (``model.py``) on one client's samples with hand-written gradients: the forward
pass of ``net.forward`` for a single client, unpadded, and its backward pass (tested against
autograd through ``net.forward``). Built from ``layers.py``; a parameter dict holds one client's
own (possibly narrowed) tensors, widths read from their shapes.

    DLRM  v = [users…, pooled, item, genre, bottom] (F, d) per sample; x = [bottom, v_i·v_j (i<j)]
          ∂v = (D + Dᵀ) v with D the upper-triangular matrix of ∂(v_i·v_j); ∂bottom += ∂x[:d]
    DIN   x = [users…, pooled, item, genre, dense] per sample (``attention.py`` weighs the pairs)

The history pools through the client's K distinct clicked items c (K, d): pooled = A c with A
(n, K) holding each pair's weight over its sample's history length at (sample, click) — 1 in
DLRM, the attention's w_p in DIN — so ∂c = Aᵀ ∂pooled (+ the attention's ∂h per pair) and
∂w_p = (∂pooled cᵀ)[s_p, k_p] / n_s: small products in place of per-pair gathers and sums.
"""

from __future__ import annotations

from functools import lru_cache
from typing import NamedTuple, Optional

import numpy as np

from cluster.fl.client_sgd import Gradient, RowGradient
from cluster.fl.families.click.attention import AttentionCache, attention_backward, attention_forward
from cluster.fl.families.click.layers import Grads, Layer, mlp_backward, mlp_forward
from cluster.fl.families.click.model import ClickSpec
from cluster.fl.families.click.samples import ClientSamples


class Cache(NamedTuple):
    """What the backward pass reads of the forward: the per-sample vectors (users…, item), the
    rows of the client's clicked items, the MLPs' layers, DLRM's interacting vectors and bottom
    layers, DIN's attention and its weighted pooling matrix."""

    users: list[np.ndarray]
    item: np.ndarray
    clicks: np.ndarray
    top: list[Layer]
    vectors: Optional[np.ndarray] = None
    bottom: Optional[list[Layer]] = None
    attention: Optional[AttentionCache] = None
    pool: Optional[np.ndarray] = None


def forward(spec: ClickSpec, params: dict[str, np.ndarray], s: ClientSamples) -> tuple[np.ndarray, Cache]:
    """Logits (n,) of the client's samples, and the cache for ``backward``."""
    users = [s.onehot[:, cols] @ params[f"emb.{name}"] for (name, _), cols in zip(spec.cats, _cat_columns(spec))]
    item = params["emb.item"][s.item]
    clicks = params["emb.item"][s.clicks]
    genre = s.genres @ params["emb.genre"]
    top_layers = len(spec.top_hidden) + 1
    if spec.kind == "dlrm":
        assert s.pool is not None
        pooled = s.pool @ clicks
        bottom, bottom_cache = mlp_forward(params, "bottom", s.dense, len(spec.bottom_hidden) + 1, "relu", True)
        vectors = np.stack([*users, pooled, item, genre, bottom], axis=1)
        upper = _upper(spec.n_vectors)
        dots = np.matmul(vectors, vectors.transpose(0, 2, 1))[:, upper[0], upper[1]]
        logits, top = mlp_forward(params, "top", np.concatenate([bottom, dots], axis=1), top_layers, "relu")
        return logits[:, 0], Cache(users, item, clicks, top, vectors=vectors, bottom=bottom_cache)
    weights, attention = attention_forward(params, s, clicks, item, len(spec.attention_hidden) + 1)
    pool = s.pool_matrix(weights * s.pair_inv)
    top_in = np.concatenate([*users, pool @ clicks, item, genre, s.dense], axis=1)
    logits, top = mlp_forward(params, "top", top_in, top_layers, "dice")
    return logits[:, 0], Cache(users, item, clicks, top, attention=attention, pool=pool)


def backward(
    spec: ClickSpec,
    params: dict[str, np.ndarray],
    s: ClientSamples,
    cache: Cache,
    dlogits: np.ndarray,
    tables: bool = True,
    into: Optional[dict[str, np.ndarray]] = None,
) -> dict[str, Gradient]:
    """The gradient of Σ dlogits·logits with respect to every parameter; the embedding tables'
    only with ``tables`` (their rows and everything that feeds them are skipped otherwise).
    ``into[name]``: a zeroed array that parameter's gradient is written into (and returned as)."""
    grads = Grads(into)
    d = spec.dim
    act = "relu" if spec.kind == "dlrm" else "dice"
    dx = mlp_backward(params, "top", cache.top, dlogits[:, None], act, grads)
    assert dx is not None
    n_cats = len(spec.cats)
    if spec.kind == "dlrm":
        vectors, n_vec = cache.vectors, spec.n_vectors
        assert vectors is not None and cache.bottom is not None
        upper = _upper(n_vec)
        d_dots = np.zeros((s.n, n_vec, n_vec), np.float32)
        d_dots[:, upper[0], upper[1]] = dx[:, d:]
        d_vectors = np.matmul(d_dots + d_dots.transpose(0, 2, 1), vectors)
        d_bottom = d_vectors[:, -1] + dx[:, :d]
        mlp_backward(params, "bottom", cache.bottom, d_bottom, "relu", grads, last_relu=True, input_grad=False)
        if not tables:
            return dict(grads)
        d_users = [d_vectors[:, k] for k in range(n_cats)]
        d_pooled, d_item, d_genre = d_vectors[:, n_cats], d_vectors[:, n_cats + 1], d_vectors[:, n_cats + 2]
        assert s.pool is not None
        d_clicks = s.pool.T @ d_pooled
    else:
        d_users = [dx[:, k * d : (k + 1) * d] for k in range(n_cats)]
        d_pooled, d_item, d_genre = (dx[:, (n_cats + k) * d : (n_cats + k + 1) * d] for k in range(3))
        assert cache.pool is not None and cache.attention is not None
        assert s.pooling is not None and s.by_click is not None
        d_weights = (d_pooled @ cache.clicks.T)[s.pair_sample, s.pair_click] * s.pair_inv
        pair_grads = attention_backward(params, cache.attention, d_weights, grads, tables)
        if pair_grads is None:
            return dict(grads)
        d_history, d_target = pair_grads
        d_item = d_item + s.pooling.sum(d_target)
        d_clicks = cache.pool.T @ d_pooled
        d_clicks += s.by_click.sums(d_history)  # every click has a pair: its rows are 0..K-1
    grads.product("emb.genre", s.genres.T, d_genre)
    for (name, _), cols, d_user in zip(spec.cats, _cat_columns(spec), d_users):
        grads.product(f"emb.{name}", s.onehot[:, cols].T, d_user)
    rows, item_rows = s.item_rows.rows, s.item_rows.sums(np.concatenate([d_item, d_clicks]))
    table = grads.into.get("emb.item")
    if table is None:
        return {**grads, "emb.item": RowGradient(rows, item_rows, params["emb.item"].shape[0])}
    table[rows] = item_rows
    return {**grads, "emb.item": table}


def _cat_columns(spec: ClickSpec) -> list[slice]:
    """Each user-code table's columns of ``ClientSamples.onehot``."""
    return _columns(spec.cat_sizes)


@lru_cache(maxsize=8)
def _columns(sizes: tuple[int, ...]) -> list[slice]:
    # Keyed by the sizes alone: hashing the whole spec costs more than the lookup saves.
    ends = np.cumsum(sizes)
    return [slice(int(end - size), int(end)) for end, size in zip(ends, sizes)]


@lru_cache(maxsize=8)
def _upper(n: int) -> tuple[np.ndarray, np.ndarray]:
    """Row-major (i, j) of i < j: the order of DLRM's pairwise dots."""
    return np.triu_indices(n, 1)
