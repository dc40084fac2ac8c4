"""DIN's local activation unit (``model.py``) on one client's (sample, clicked item) pairs, forward
and backward by hand, ``BLOCK`` pairs at a time.

The first layer, [h, t, h − t, h ⊙ t] W + b with W's row blocks W_h, W_t, W_−, W_⊙, is computed
as [h, t, h ⊙ t, 1] [W_h + W_−; W_t − W_−; W_⊙; b], a quarter fewer multiply-adds per pair in the
attention's largest products and the bias inside the product; the gradient G of the merged
weight splits back: ∂W_h = G_h, ∂W_t = G_t, ∂W_− = G_h − G_t, ∂W_⊙ = G_⊙, ∂b = G_1.

A heavy client has tens of thousands of pairs, whose (pairs, 64) activations overflow the core's
cache; in blocks, each elementwise pass of the Dice layers runs on cached data. The blocks are
fixed by the client's own pair count, and each weight's gradient adds the blocks' in order, so
the arithmetic stays the client's own.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np

from cluster.fl.families.click.layers import Layer, dice, dice_backward, mlp_backward, mlp_forward
from cluster.fl.families.click.samples import ClientSamples

BLOCK = 1024


@dataclass(frozen=True)
class AttentionCache:
    """The merged first weight (3d + 1, width) and, per block of pairs, its range and layers (the
    first's input is [h, t, h ⊙ t, 1])."""

    merged: np.ndarray
    blocks: list[tuple[int, int, list[Layer]]]


def attention_forward(
    params: dict[str, np.ndarray], s: ClientSamples, clicks: np.ndarray, item: np.ndarray, n_layers: int
) -> tuple[np.ndarray, AttentionCache]:
    """Each pair's unnormalised weight (P,), and what ``attention_backward`` reads. clicks: (K, d)
    the rows of the client's clicked items; item: (n, d) its samples' candidates."""
    d = clicks.shape[1]
    w_h, w_t, w_minus, w_times = (params["att.0.weight"][k * d : (k + 1) * d] for k in range(4))
    merged = np.concatenate([w_h + w_minus, w_t - w_minus, w_times, params["att.0.bias"][None]])
    n_pairs = len(s.pair_click)
    weights = np.empty(n_pairs, np.float32)
    blocks = []
    for lo in range(0, n_pairs, BLOCK):
        hi = min(lo + BLOCK, n_pairs)
        x = np.empty((hi - lo, 3 * d + 1), np.float32)
        np.take(clicks, s.pair_click[lo:hi], axis=0, out=x[:, :d], mode="clip")
        np.take(item, s.pair_sample[lo:hi], axis=0, out=x[:, d : 2 * d], mode="clip")
        np.multiply(x[:, :d], x[:, d : 2 * d], out=x[:, 2 * d : 3 * d])
        x[:, 3 * d] = 1
        z = x @ merged
        a, p = dice(z, params["att.0.alpha"])
        w, rest = mlp_forward(params, "att", a, n_layers, "dice", first=1)
        weights[lo:hi] = w[:, 0]
        blocks.append((lo, hi, [Layer(x, z, p), *rest]))
    return weights, AttentionCache(merged, blocks)


def attention_backward(
    params: dict[str, np.ndarray],
    cache: AttentionCache,
    d_weights: np.ndarray,
    grads: dict[str, np.ndarray],
    tables: bool,
) -> Optional[tuple[np.ndarray, np.ndarray]]:
    """Adds the attention's parameter gradients to ``grads`` given d_weights (P,); with
    ``tables``, returns the gradients (P, d) of each pair's clicked item h and candidate t."""
    d = (cache.merged.shape[0] - 1) // 3
    n_pairs = len(d_weights)
    if not n_pairs:  # no history: the attention weighs nothing
        grads.update({name: np.zeros_like(value) for name, value in params.items() if name.startswith("att.")})
        return (np.zeros((0, d), np.float32), np.zeros((0, d), np.float32)) if tables else None
    d_history = np.empty((n_pairs, d), np.float32) if tables else None
    d_target = np.empty((n_pairs, d), np.float32) if tables else None
    totals: dict[str, np.ndarray] = {}
    for lo, hi, (first, *rest) in cache.blocks:
        block: dict[str, np.ndarray] = {}
        da = mlp_backward(params, "att", rest, d_weights[lo:hi, None], "dice", block, first=1)
        assert da is not None and first.p is not None
        dz, block["att.0.alpha"] = dice_backward(da, first.z, first.p, params["att.0.alpha"])
        block["merged"] = first.x.T @ dz
        for name, value in block.items():
            totals[name] = value if name not in totals else totals[name] + value
        if d_history is not None and d_target is not None:
            d_in = dz @ cache.merged[: 3 * d].T
            d_times = d_in[:, 2 * d :]
            np.multiply(d_times, first.x[:, d : 2 * d], out=d_history[lo:hi])
            d_history[lo:hi] += d_in[:, :d]
            np.multiply(d_times, first.x[:, :d], out=d_target[lo:hi])
            d_target[lo:hi] += d_in[:, d : 2 * d]
    g_h, g_t, g_times, g_bias = np.split(totals.pop("merged"), [d, 2 * d, 3 * d])
    grads["att.0.weight"] = np.concatenate([g_h, g_t, g_h - g_t, g_times])
    grads["att.0.bias"] = g_bias[0]
    grads.update(totals)
    return None if d_history is None or d_target is None else (d_history, d_target)
