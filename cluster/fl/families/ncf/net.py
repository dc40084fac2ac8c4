"""The NCF models' tensor maths (see ``cluster/fl/families/ncf/model.py`` for GMF, MLP and NeuMF,
their parameters and channel slicing): the global model's initialisation, and the batched
per-client logits with a leading client axis, in training and in evaluation."""

from __future__ import annotations

import math

import numpy as np
import torch

from cluster.fl.families.ncf.model import NCFSpec


def init_global(spec: NCFSpec, generator: torch.Generator) -> dict[str, torch.Tensor]:
    params: dict[str, torch.Tensor] = {}
    for table in spec.item_tables:
        params[table] = torch.randn(spec.n_items, spec.dim, generator=generator) * spec.init_std
    shapes = spec.dense_shapes()
    for name, shape in shapes.items():
        # torch.nn.Linear's default: uniform(±1/sqrt(fan_in)) for weight and bias alike.
        fan_in = shapes[name.rsplit(".", 1)[0] + ".weight"][0]
        params[name] = (torch.rand(shape, generator=generator) * 2 - 1) / math.sqrt(fan_in)
    return params


def initial_params(spec: NCFSpec, seed: int) -> dict[str, np.ndarray]:
    """The global model w⁰ of a run: the server starts from it, and so do Ditto's personal models."""
    generator = torch.Generator().manual_seed(seed)
    return {name: t.numpy().astype(np.float32) for name, t in init_global(spec, generator).items()}


def batched_logits(
    spec: NCFSpec,
    dense: dict[str, torch.Tensor],
    users: dict[str, torch.Tensor],
    items: dict[str, torch.Tensor],
    slots: torch.Tensor,
) -> torch.Tensor:
    """Scores (C, L) of L item slots for each of C clients.

    dense[name]: (C, *shape) per-client copies; users[table]: (C, d); items[table]: (C, M, d)
    each client's local rows; slots: (C, L) int64 indices into the M rows.
    """
    index = slots.unsqueeze(-1).expand(*slots.shape, spec.dim)
    features = []
    if spec.kind in ("gmf", "neumf"):
        item_vec = torch.gather(items["item_gmf"], 1, index)
        features.append(users["user_gmf"].unsqueeze(1) * item_vec)
    if spec.uses_mlp:
        item_vec = torch.gather(items["item_mlp"], 1, index)
        # The first layer sees [user ; item]: the user half is the same for all of a client's
        # samples, so it is multiplied once per client instead of once per sample.
        first = dense["mlp.0.weight"]
        user_part = torch.bmm(users["user_mlp"].unsqueeze(1), first[:, : spec.dim])
        hidden = torch.relu(torch.bmm(item_vec, first[:, spec.dim :]) + user_part + dense["mlp.0.bias"].unsqueeze(1))
        for k in range(1, len(spec.mlp_layers)):
            hidden = torch.relu(torch.bmm(hidden, dense[f"mlp.{k}.weight"]) + dense[f"mlp.{k}.bias"].unsqueeze(1))
        features.append(hidden)
    head = features[0] if len(features) == 1 else torch.cat(features, dim=-1)
    return torch.bmm(head, dense["out.weight"].unsqueeze(-1)).squeeze(-1) + dense["out.bias"]


def score_candidates(
    spec: NCFSpec,
    global_params: dict[str, torch.Tensor],
    users: dict[str, torch.Tensor],
    candidates: torch.Tensor,
    client_dense: dict[str, torch.Tensor] | None = None,
) -> torch.Tensor:
    """Scores (N, K) of K candidate items for N clients under the global model, or with each
    client's own dense part ``client_dense[name]`` (N, *shape) (a cluster or personal model)."""
    n_clients = candidates.shape[0]
    dense = (
        client_dense
        if client_dense is not None
        else {
            name: global_params[name].unsqueeze(0).expand(n_clients, *global_params[name].shape)
            for name in spec.dense_shapes()
        }
    )
    items = {table: global_params[table][candidates] for table in spec.item_tables}
    slots = torch.arange(candidates.shape[1]).unsqueeze(0).expand_as(candidates)
    return batched_logits(spec, dense, users, items, slots)
