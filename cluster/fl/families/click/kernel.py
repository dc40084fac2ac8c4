"""DLRM and DIN (``model.py``) on one client's samples with hand-written gradients: the forward
pass of ``net.forward`` for a single client, unpadded, and its backward pass (tested against
autograd through ``net.forward``). Built from ``layers.py``; a parameter dict holds one client's
own (possibly narrowed) tensors, widths read from their shapes.

    DLRM  v = [users…, pooled, item, genre, bottom] (F, d) per sample; x = [bottom, v_i·v_j (i<j)]
          ∂v = (D + Dᵀ) v with D the upper-triangular matrix of ∂(v_i·v_j); ∂bottom += ∂x[:d]
    DIN   pooled_s = Σ_p w_p h_p / n_s, w = att([h, t, h − t, h ⊙ t]) per pair p of sample s
          ∂w_p = ∂pooled_s·h_p / n_s; ∂h_p += w_p ∂pooled_s / n_s

DIN's first attention layer, [h, t, h − t, h ⊙ t] W + b with W's row blocks W_h, W_t, W_−, W_⊙,
is computed as [h, t, h ⊙ t] [W_h + W_−; W_t − W_−; W_⊙] + b, a quarter fewer multiply-adds per
pair in the attention's largest products; the gradient G of the merged weight splits back:
∂W_h = G_h, ∂W_t = G_t, ∂W_− = G_h − G_t, ∂W_⊙ = G_⊙.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Optional

import numpy as np

from cluster.fl.families.click.layers import Layer, mlp_backward, mlp_forward
from cluster.fl.families.click.model import ClickSpec
from cluster.fl.families.click.samples import ClientSamples


@dataclass(frozen=True)
class Cache:
    """What the backward pass reads of the forward: the per-sample vectors (users…, item,
    history), the MLPs' layers, DLRM's interacting vectors and bottom layers, DIN's attention
    layers, its weights and the attention parameters with the merged first weight."""

    users: list[np.ndarray]
    item: np.ndarray
    history: np.ndarray
    top: list[Layer]
    vectors: Optional[np.ndarray] = None
    bottom: Optional[list[Layer]] = None
    attention: Optional[list[Layer]] = None
    weights: Optional[np.ndarray] = None
    att_params: Optional[dict[str, np.ndarray]] = None


def forward(spec: ClickSpec, params: dict[str, np.ndarray], s: ClientSamples) -> tuple[np.ndarray, Cache]:
    """Logits (n,) of the client's samples, and the cache for ``backward``."""
    users = [params[f"emb.{name}"][s.cats[:, k]] for k, (name, _) in enumerate(spec.cats)]
    item = params["emb.item"][s.item]
    history = params["emb.item"][s.history]
    genre = s.genres @ params["emb.genre"]
    top_layers = len(spec.top_hidden) + 1
    if spec.kind == "dlrm":
        pooled = s.pooling.sum(history)
        pooled *= s.inv_count
        bottom, bottom_cache = mlp_forward(params, "bottom", s.dense, len(spec.bottom_hidden) + 1, "relu", True)
        vectors = np.stack([*users, pooled, item, genre, bottom], axis=1)
        upper = _upper(spec.n_vectors)
        dots = np.matmul(vectors, vectors.transpose(0, 2, 1))[:, upper[0], upper[1]]
        logits, top = mlp_forward(params, "top", np.concatenate([bottom, dots], axis=1), top_layers, "relu")
        return logits[:, 0], Cache(users, item, history, top, vectors=vectors, bottom=bottom_cache)
    att_params = _merged_attention(params, spec.dim)
    target = item[s.pair_sample]
    att_in = np.concatenate([history, target, history * target], axis=1)
    weights, attention = mlp_forward(att_params, "att", att_in, len(spec.attention_hidden) + 1, "dice")
    pooled = s.pooling.sum(weights * history)
    pooled *= s.inv_count
    top_in = np.concatenate([*users, pooled, item, genre, s.dense], axis=1)
    logits, top = mlp_forward(params, "top", top_in, top_layers, "dice")
    return logits[:, 0], Cache(users, item, history, top, attention=attention, weights=weights, att_params=att_params)


def _merged_attention(params: dict[str, np.ndarray], d: int) -> dict[str, np.ndarray]:
    w_h, w_t, w_minus, w_times = (params["att.0.weight"][k * d : (k + 1) * d] for k in range(4))
    return params | {"att.0.weight": np.concatenate([w_h + w_minus, w_t - w_minus, w_times])}


def backward(
    spec: ClickSpec,
    params: dict[str, np.ndarray],
    s: ClientSamples,
    cache: Cache,
    dlogits: np.ndarray,
    tables: bool = True,
) -> dict[str, np.ndarray]:
    """The gradient of Σ dlogits·logits with respect to every parameter; the embedding tables'
    only with ``tables`` (their rows and everything that feeds them are skipped otherwise)."""
    grads: dict[str, np.ndarray] = {}
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
            return grads
        d_users = [d_vectors[:, k] for k in range(n_cats)]
        d_pooled, d_item, d_genre = d_vectors[:, n_cats], d_vectors[:, n_cats + 1], d_vectors[:, n_cats + 2]
        d_history = (d_pooled * s.inv_count)[s.pair_sample]
    else:
        d_users = [dx[:, k * d : (k + 1) * d] for k in range(n_cats)]
        d_pooled, d_item, d_genre = (dx[:, (n_cats + k) * d : (n_cats + k + 1) * d] for k in range(3))
        assert cache.weights is not None and cache.attention is not None and cache.att_params is not None
        d_pairs = (d_pooled * s.inv_count)[s.pair_sample]
        d_weights = (d_pairs * cache.history) @ np.ones((d, 1), np.float32)
        d_in = mlp_backward(cache.att_params, "att", cache.attention, d_weights, "dice", grads, input_grad=tables)
        g_h, g_t, g_times = np.split(grads["att.0.weight"], 3)
        grads["att.0.weight"] = np.concatenate([g_h, g_t, g_h - g_t, g_times])
        if not tables:
            return grads
        assert d_in is not None
        d_times = d_in[:, 2 * d :]
        d_history = cache.weights * d_pairs
        d_history += d_in[:, :d]
        d_history += d_times * cache.attention[0].x[:, d : 2 * d]
        d_target = d_times * cache.history
        d_target += d_in[:, d : 2 * d]
        d_item = d_item + s.pooling.sum(d_target)
    grads["emb.genre"] = s.genres.T @ d_genre
    grads["emb.item"] = s.item_rows.table(np.concatenate([d_item, d_history]), params["emb.item"].shape[0])
    for k, (name, _) in enumerate(spec.cats):
        grads[f"emb.{name}"] = s.cat_onehot[k].T @ d_users[k]
    return grads


@lru_cache(maxsize=8)
def _upper(n: int) -> tuple[np.ndarray, np.ndarray]:
    """Row-major (i, j) of i < j: the order of DLRM's pairwise dots."""
    return np.triu_indices(n, 1)
