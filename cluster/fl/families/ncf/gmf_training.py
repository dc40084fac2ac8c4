"""GMF's local training without autograd: its samples stay in one flat array sorted by client
and its gradients are written out by hand (tested against autograd), which is far faster than the
batched tensor program of the one local-SGD loop (``cluster/fl/local_sgd.py``) the other
models take."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np

from cluster.fl.recipe import LocalRecipe
from cluster.fl.families.ncf.model import NCFSpec


# Defined here rather than next to ``training.train_local``, which takes it: both trainers read
# it, and ``training.py`` imports this module.
@dataclass(frozen=True)
class NCFOptions:
    """How a strategy or a tier changes the clients' local training from plain training at w:
    ``client_dense[name]`` (C, *shape), each client's own starting dense part (a Cali3F cluster
    model, a Ditto personal model) instead of the global one; ``prox_lambda``, Ditto's λ(v − w)
    added to the dense gradient, w the global dense part; ``fractions`` (C,), the width of the
    HeteroFL sub-model each client trains (``model.channel_slices``; None: all whole);
    ``correction[name]`` (C, *shape), added to each client's dense gradient at every step
    (SCAFFOLD), full-width clients only."""

    client_dense: Optional[dict[str, np.ndarray]] = None
    prox_lambda: float = 0.0
    fractions: Optional[np.ndarray] = None
    correction: Optional[dict[str, np.ndarray]] = None

    def widths(self, n_clients: int) -> np.ndarray:
        """``fractions`` as float32 (n_clients,), all 1 when None."""
        return np.ones(n_clients, np.float32) if self.fractions is None else np.asarray(self.fractions, np.float32)


PLAIN = NCFOptions()


@dataclass(frozen=True)
class FlatSamples:
    """The trained clients' samples in one flat array sorted by client (each client's positives,
    then its negatives), with their slots, each client's distinct items in ascending order:
    per sample its slot among all the clients' (``sample_slot``) and its label; per client its
    sample count (``n_total``); per slot its owner (an index into the clients) and its item;
    ``by_slot`` puts the samples in slot order and ``slot_starts`` is where each slot's samples
    start in that order."""

    sample_slot: np.ndarray
    sample_label: np.ndarray
    n_total: np.ndarray
    slot_owner: np.ndarray
    slot_item: np.ndarray
    by_slot: np.ndarray
    slot_starts: np.ndarray


def train_flat_gmf(
    spec: NCFSpec,
    recipe: LocalRecipe,
    global_params: dict[str, np.ndarray],
    users: dict[str, np.ndarray],
    samples: FlatSamples,
    options: NCFOptions = PLAIN,
) -> tuple:
    """GMF needs no per-client matrices, so its samples stay in one flat array (sorted by client)
    and its gradients are written out by hand (tested against autograd):

        z = Σ_k u_k v_k h_k + b,   e = σ(z) − y   (÷ sample count for 'mean'),
        ∂v = e·u⊙h,  ∂u = Σ e·v⊙h,  ∂h = Σ e·u⊙v,  ∂b = Σ e.

    Per-client and per-row sums are ``np.add.reduceat`` over contiguous segments, which add each
    segment's terms in order: a client's arithmetic is the same whatever other clients are
    present, so results do not depend on how clients are spread over workers. ``options.fractions``
    is not read: GMF has no hidden layer to narrow."""
    client_dense, prox_lambda, correction = options.client_dense, options.prox_lambda, options.correction
    n_total, slot_item = samples.n_total, samples.slot_item
    n_clients = len(n_total)
    items = global_params["item_gmf"][slot_item].astype(np.float32)
    items0 = items.copy()
    source = global_params if client_dense is None else client_dense
    weight0 = np.broadcast_to(source["out.weight"], (n_clients, spec.dim)).astype(np.float32)
    bias0 = np.broadcast_to(source["out.bias"], (n_clients, 1)).astype(np.float32)
    anchor_weight, anchor_bias = global_params["out.weight"], global_params["out.bias"]
    weight, bias = weight0.copy(), bias0.copy()
    user = users["user_gmf"].astype(np.float32, copy=True)
    layout = _GMFLayout.of(recipe, samples)
    client_starts, first_loss, first_z = layout.client_starts, None, None
    sign = np.where(samples.sample_label > 0, np.float32(-1), np.float32(1))
    for _ in range(recipe.epochs):
        z, grad_v, grad_u, grad_h, grad_b = _gmf_gradients(spec, layout, items, user, weight, bias)
        if first_loss is None:
            per_sample = np.logaddexp(np.float32(0), sign * z)  # BCE with logits
            first_loss = (np.add.reduceat(per_sample, client_starts) / n_total).astype(np.float32)
            first_z = z
        if prox_lambda:
            grad_h = grad_h + np.float32(prox_lambda) * (weight - anchor_weight)
            grad_b = grad_b + np.float32(prox_lambda) * (bias - anchor_bias)
        if correction is not None:  # SCAFFOLD: each client's c − c_i on its dense gradient
            grad_h = grad_h + correction["out.weight"].reshape(grad_h.shape)
            grad_b = grad_b + correction["out.bias"].reshape(grad_b.shape)
        if recipe.prox_mu and not prox_lambda:  # FedProx: every shared tensor is pulled toward what it received
            mu = np.float32(recipe.prox_mu)
            grad_v = grad_v + mu * (items - items0)
            grad_h = grad_h + mu * (weight - weight0)
            grad_b = grad_b + mu * (bias - bias0)
        items -= np.float32(recipe.lr_item) * grad_v
        user -= np.float32(recipe.lr_user) * grad_u
        weight -= np.float32(recipe.lr_dense) * grad_h
        bias -= np.float32(recipe.lr_dense) * grad_b
    item_deltas = {"item_gmf": items - items0}
    dense_deltas = {"out.weight": weight - weight0, "out.bias": bias - bias0}
    assert first_z is not None, "a local pass takes at least one step (recipe.epochs ≥ 1)"
    return (
        np.arange(n_clients),
        first_loss,
        samples.slot_owner,
        slot_item,
        item_deltas,
        dense_deltas,
        {"user_gmf": user},
        np.split(first_z, client_starts[1:]),
    )


@dataclass(frozen=True)
class _GMFLayout:
    """The flat GMF samples (sorted by client): each one's slot, label and loss scale; where
    each client's samples start, and the samples in slot order with where each slot starts."""

    sample_slot: np.ndarray
    sample_label: np.ndarray
    n_total: np.ndarray
    scale_per_sample: np.ndarray
    client_starts: np.ndarray
    by_slot: np.ndarray
    slot_starts: np.ndarray

    @classmethod
    def of(cls, recipe: LocalRecipe, samples: FlatSamples) -> "_GMFLayout":
        n_total = samples.n_total
        sum_loss = recipe.loss_reduction == "sum"
        scale = np.ones(len(n_total), np.float32) if sum_loss else (1.0 / n_total).astype(np.float32)
        return cls(
            samples.sample_slot,
            samples.sample_label,
            n_total,
            np.repeat(scale, n_total),
            np.cumsum(n_total) - n_total,
            samples.by_slot,
            samples.slot_starts,
        )


def _gmf_gradients(spec: NCFSpec, layout: _GMFLayout, items, user, weight, bias):
    """(logits, ∂v per slot, ∂u, ∂h, ∂b per client) at the current parameters."""
    # u ⊙ h is per client, so it is formed once per client and repeated over its samples
    # (samples are sorted by client); likewise ∂u = h ⊙ Σ e·v and ∂h = u ⊙ Σ e·v need a
    # single per-client segment sum.
    uh = np.repeat(user * weight, layout.n_total, axis=0)
    v = items[layout.sample_slot]
    z = np.einsum("nd,nd->n", uh, v) + np.repeat(bias[:, 0], layout.n_total)
    e = ((1.0 / (1.0 + np.exp(-z))) - layout.sample_label) * layout.scale_per_sample
    e_col = e[:, None]
    grad_v = np.add.reduceat((e_col * uh)[layout.by_slot], layout.slot_starts, axis=0)
    ev = np.empty((len(e), spec.dim + 1), dtype=np.float32)
    np.multiply(e_col, v, out=ev[:, : spec.dim])
    ev[:, -1] = e
    sums = np.add.reduceat(ev, layout.client_starts, axis=0)
    return z, grad_v, weight * sums[:, :-1], user * sums[:, :-1], sums[:, -1:]
