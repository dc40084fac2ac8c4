"""The click models' tensor maths (see ``cluster/fl/families/click/model.py`` for DLRM and DIN, the shapes
and channel slicing): initial parameters, the batch of padded per-client samples, and the
batched forward pass with a leading client axis."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from cluster.fl.families.click.model import ClickSpec


def init_params(spec: ClickSpec, generator: torch.Generator) -> dict[str, torch.Tensor]:
    """Embeddings N(0, init_std²); weights and biases torch.nn.Linear's uniform(±1/√fan_in);
    Dice α = 0 (Dice starts as x·σ(x))."""
    params: dict[str, torch.Tensor] = {}
    shapes = spec.shapes()
    for name, shape in shapes.items():
        if name.startswith("emb."):
            params[name] = torch.randn(shape, generator=generator) * spec.init_std
        elif name.endswith(".alpha"):
            params[name] = torch.zeros(shape)
        else:
            fan_in = shapes[name.rsplit(".", 1)[0] + ".weight"][0]
            params[name] = (torch.rand(shape, generator=generator) * 2 - 1) / math.sqrt(fan_in)
    return params


def initial_params(spec: ClickSpec, seed: int) -> dict[str, np.ndarray]:
    """w⁰ of a run with ``seed``, as float32 arrays: what the server starts from."""
    generator = torch.Generator().manual_seed(seed)
    return {name: t.numpy().astype(np.float32) for name, t in init_params(spec, generator).items()}


@dataclass(frozen=True)
class ClickBatch:
    """C clients' padded samples and their history as flat (sample, item) pairs.

    user_cats: (C, L, n_cats) int64 (per sample, so one "client" may also hold many users' rows,
    as in evaluation under the global model); item: (C, L) int64; genres: (C, L, n_genres)
    float32 (mean over the item's genres); dense: (C, L, n_dense) float32;
    history: (C, P) int64 clicked item of each pair; history_sample: (C, P) int64 the sample
    (0..L-1) the pair belongs to; history_mask: (C, P) float32 1 for a real pair;
    inv_count: (C, L, 1) float32 1 / max(1, the sample's history length).
    """

    user_cats: torch.Tensor
    item: torch.Tensor
    genres: torch.Tensor
    dense: torch.Tensor
    history: torch.Tensor
    history_sample: torch.Tensor
    history_mask: torch.Tensor
    inv_count: torch.Tensor


def forward(spec: ClickSpec, params: dict[str, torch.Tensor], batch: ClickBatch) -> torch.Tensor:
    """Logits (C, L). ``params[name]``: (C, *shape), full or narrowed (widths come from shapes)."""
    users = [_lookup(params[f"emb.{name}"], batch.user_cats[..., k]) for k, (name, _) in enumerate(spec.cats)]
    item = _lookup(params["emb.item"], batch.item)
    history = _lookup(params["emb.item"], batch.history)
    genre = torch.bmm(batch.genres, params["emb.genre"])
    if spec.kind == "dlrm":
        pooled = (
            _pool(history * batch.history_mask.unsqueeze(-1), batch.history_sample, item.shape[1]) * batch.inv_count
        )
        bottom = _mlp(params, "bottom", batch.dense, len(spec.bottom_hidden) + 1, dice=False, last_relu=True)
        vectors = torch.stack([*users, pooled, item, genre, bottom], dim=2)
        # Pairwise dots (i < j, row-major) as products and a last-axis sum rather than one bmm per
        # sample: the number of tiny matrices would follow the batch, and so might the BLAS
        # kernel chosen. Slices, not an index gather, whose backward is a slow accumulating put.
        pairs = torch.cat(
            [(vectors[:, :, i : i + 1] * vectors[:, :, i + 1 :]).sum(dim=-1) for i in range(spec.n_vectors - 1)], dim=-1
        )
        top_in = torch.cat([bottom, pairs], dim=-1)
        return _mlp(params, "top", top_in, len(spec.top_hidden) + 1, dice=False).squeeze(-1)
    pooled = _attention_pool(spec, params, history, item, batch)
    top_in = torch.cat([*users, pooled, item, genre, batch.dense], dim=-1)
    return _mlp(params, "top", top_in, len(spec.top_hidden) + 1, dice=True).squeeze(-1)


def _lookup(table: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """Rows of each client's own table: table (C, V, d), index (C, ...) → (C, ..., d). One
    index_select on the flattened tables; its backward adds each row's gradients in sample order."""
    n_clients, n_rows, dim = table.shape
    offset = (torch.arange(n_clients) * n_rows).view(n_clients, *([1] * (index.dim() - 1)))
    flat = torch.index_select(table.reshape(n_clients * n_rows, dim), 0, (index + offset).reshape(-1))
    return flat.reshape(*index.shape, dim)


def _linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """x (C, N, in) @ weight (C, in, out) + bias (C, out). A one-column output is a product and
    a last-axis sum: bmm with one client would go to a matrix-vector kernel whose rounding
    differs from the batched one, and a client's result must not depend on its companions."""
    if weight.shape[-1] == 1:
        return (x * weight[:, :, 0].unsqueeze(1)).sum(dim=-1, keepdim=True) + bias.unsqueeze(1)
    return torch.bmm(x, weight) + bias.unsqueeze(1)


def _dice(x: torch.Tensor, alpha: torch.Tensor) -> torch.Tensor:
    """Dice without batch norm: p·x + (1 − p)·α·x with p = σ(x), x (C, ..., width), alpha
    (C, width) — fused (:class:`_Dice`): on DIN's (C, P, 64) attention activations the
    unfused form's many elementwise passes, forward and backward, cost more than the matmuls."""
    return _Dice.apply(x, alpha)


class _Dice(torch.autograd.Function):
    """y = x·(α + (1 − α)·p); ∂y/∂x = α + (1 − α)·(p + x·p·(1 − p)); ∂y/∂α = x·(1 − p)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, alpha: torch.Tensor) -> torch.Tensor:
        a = alpha.view(alpha.shape[0], *([1] * (x.dim() - 2)), alpha.shape[-1])
        p = torch.sigmoid(x)
        ctx.save_for_backward(x, a, p)
        return x * (a + (1 - a) * p)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x, a, p = ctx.saved_tensors
        one_minus_p = 1 - p
        x_one_minus_p = x * one_minus_p
        grad_x = grad * (a + (1 - a) * (p + p * x_one_minus_p))
        # One reduction over a (C, N, width) view: a client's α-gradient sums its own N terms.
        grad_alpha = (grad * x_one_minus_p).reshape(x.shape[0], -1, x.shape[-1]).sum(dim=1)
        return grad_x, grad_alpha


def _mlp(
    params: dict, prefix: str, x: torch.Tensor, n_layers: int, dice: bool, last_relu: bool = False
) -> torch.Tensor:
    """Layers ``prefix.0 .. prefix.{n_layers-1}`` on x (C, ..., in): ReLU or Dice between them."""
    lead = x.shape[:-1]
    h = x.reshape(x.shape[0], -1, x.shape[-1])
    for k in range(n_layers):
        h = _linear(h, params[f"{prefix}.{k}.weight"], params[f"{prefix}.{k}.bias"])
        if k < n_layers - 1:
            h = _dice(h, params[f"{prefix}.{k}.alpha"]) if dice else torch.relu(h)
        elif last_relu:
            h = torch.relu(h)
    return h.reshape(*lead, h.shape[-1])


def _pool(values: torch.Tensor, sample: torch.Tensor, n_samples: int) -> torch.Tensor:
    """Per-sample sums (C, L, d) of pair values (C, P, d): one index_add over flattened samples,
    which adds each sample's pairs in pair order."""
    n_clients, _, dim = values.shape
    offset = (torch.arange(n_clients) * n_samples).unsqueeze(1)
    flat = values.new_zeros(n_clients * n_samples, dim).index_add(
        0, (sample + offset).reshape(-1), values.reshape(-1, dim)
    )
    return flat.view(n_clients, n_samples, dim)


def _attention_pool(
    spec: ClickSpec, params: dict, history: torch.Tensor, item: torch.Tensor, batch: ClickBatch
) -> torch.Tensor:
    """DIN's local activation unit on every (sample, clicked item) pair: a weight from
    [h, t, h − t, h ⊙ t] (h the clicked item, t the candidate), then each sample's weighted
    mean of its history (C, L, d). history: (C, P, d); item: (C, L, d)."""
    target = _lookup(item, batch.history_sample)
    h = torch.cat([history, target, history - target, history * target], dim=-1)
    n_layers = len(spec.attention_hidden) + 1
    for k in range(n_layers):
        h = _linear(h, params[f"att.{k}.weight"], params[f"att.{k}.bias"])
        if k < n_layers - 1:
            h = _dice(h, params[f"att.{k}.alpha"])
    weights = h.squeeze(-1) * batch.history_mask
    return _pool(weights.unsqueeze(-1) * history, batch.history_sample, item.shape[1]) * batch.inv_count
