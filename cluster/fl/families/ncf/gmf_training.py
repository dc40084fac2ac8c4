"""GMF's local training without autograd: its samples stay in one flat array sorted by client
and its gradients are written out by hand (tested against autograd), which is far faster than the
batched tensor program of the one local-SGD loop (``cluster/fl/local_sgd.py``) the other
models take."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np
from scipy import sparse

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
    """The trained clients' samples in one flat array: all positives, client after client, then
    all negatives, client after client; and their slots, each client's distinct items, grouped
    by client in ascending item order. Per client its positives and negatives (``n_pos``,
    ``n_neg``) and slots (``slot_count``); per sample its slot among all the clients'
    (``sample_slot``); per slot its owner (an index into the clients) and its item."""

    n_pos: np.ndarray
    n_neg: np.ndarray
    slot_count: np.ndarray
    sample_slot: np.ndarray
    slot_owner: np.ndarray
    slot_item: np.ndarray


@dataclass(frozen=True)
class FlatResult:
    """GMF's local pass over ``FlatSamples``: per client its loss at the model it received and its
    dense deltas and new private vectors; per slot its item deltas and its logit at the model
    it received (every sample of a slot has that logit)."""

    loss: np.ndarray
    dense_deltas: dict[str, np.ndarray]
    users: dict[str, np.ndarray]
    item_deltas: dict[str, np.ndarray]
    first_logits: np.ndarray


def train_flat_gmf(
    spec: NCFSpec,
    recipe: LocalRecipe,
    global_params: dict[str, np.ndarray],
    users: dict[str, np.ndarray],
    samples: FlatSamples,
    options: NCFOptions = PLAIN,
) -> FlatResult:
    """GMF needs no per-client matrices, so its samples stay in one flat array (sorted by client)
    and its gradients are written out by hand (tested against autograd):

        z = Σ_k u_k v_k h_k + b,   e = σ(z) − y   (÷ sample count for 'mean'),
        ∂v = e·u⊙h,  ∂u = Σ e·v⊙h,  ∂h = Σ e·u⊙v,  ∂b = Σ e.

    A slot belongs to one client, whose u⊙h is the same for all its samples, so every sample of
    a slot has the same logit: z, σ(z) and the loss are formed once per slot and weighed by the
    slot's samples. Every sum runs over one client's own slots, in their order, so a client's
    arithmetic is the same whatever other clients are present and results do not depend on how
    clients are spread over workers. ``options.fractions`` is not read: GMF has no hidden layer
    to narrow."""
    client_dense, prox_lambda, correction = options.client_dense, options.prox_lambda, options.correction
    n_clients = len(samples.n_pos)
    items0 = np.take(global_params["item_gmf"], samples.slot_item, axis=0).astype(np.float32, copy=False)
    source = global_params if client_dense is None else client_dense
    weight0 = np.broadcast_to(source["out.weight"], (n_clients, spec.dim)).astype(np.float32)
    bias0 = np.broadcast_to(source["out.bias"], (n_clients, 1)).astype(np.float32)
    anchor_weight, anchor_bias = global_params["out.weight"], global_params["out.bias"]
    weight, bias = weight0.copy(), bias0.copy()
    user = users["user_gmf"].astype(np.float32, copy=True)
    layout = _GMFLayout.of(recipe, samples)
    first: Optional[tuple[np.ndarray, np.ndarray]] = None
    # The item rows' change so far: the rows themselves are items0 + delta, formed only when a
    # second step needs them.
    delta: Optional[np.ndarray] = None
    for _ in range(recipe.epochs):
        items = items0 if delta is None else items0 + delta
        z, step, grad_u, grad_h, grad_b = _gmf_gradients(layout, items, user, weight, bias, recipe.lr_item)
        if first is None:
            first = (_client_losses(layout, z), z)
        if prox_lambda:
            grad_h = grad_h + np.float32(prox_lambda) * (weight - anchor_weight)
            grad_b = grad_b + np.float32(prox_lambda) * (bias - anchor_bias)
        if correction is not None:  # SCAFFOLD: each client's c − c_i on its dense gradient
            grad_h = grad_h + correction["out.weight"].reshape(grad_h.shape)
            grad_b = grad_b + correction["out.bias"].reshape(grad_b.shape)
        if recipe.prox_mu and not prox_lambda:  # FedProx: every shared tensor is pulled toward what it received
            mu = np.float32(recipe.prox_mu)
            if delta is not None:  # zero at the first step
                step -= np.float32(recipe.lr_item) * mu * delta
            grad_h = grad_h + mu * (weight - weight0)
            grad_b = grad_b + mu * (bias - bias0)
        delta = step if delta is None else np.add(delta, step, out=delta)
        user -= np.float32(recipe.lr_user) * grad_u
        weight -= np.float32(recipe.lr_dense) * grad_h
        bias -= np.float32(recipe.lr_dense) * grad_b
    assert first is not None and delta is not None, "a local pass takes at least one step (recipe.epochs ≥ 1)"
    return FlatResult(
        first[0],
        {"out.weight": weight - weight0, "out.bias": bias - bias0},
        {"user_gmf": user},
        {"item_gmf": delta},
        first[1],
    )


@dataclass(frozen=True)
class _GMFLayout:
    """The flat GMF samples as the gradient reads them, slot by slot: per slot its owner, its
    samples (``slot_samples``), how many of them are positives (``slot_positives``) and its
    owner's loss scale; per client its sample count; the slots as a sparse (client, slot)
    pattern, ``slot_indptr`` where each client's slots start and end and ``slot_index`` 0..S−1."""

    slot_owner: np.ndarray
    slot_samples: np.ndarray
    slot_positives: np.ndarray
    slot_scale: np.ndarray
    n_total: np.ndarray
    slot_indptr: np.ndarray
    slot_index: np.ndarray

    @classmethod
    def of(cls, recipe: LocalRecipe, samples: FlatSamples) -> "_GMFLayout":
        n_pos, n_neg, slot_count, sample_slot = samples.n_pos, samples.n_neg, samples.slot_count, samples.sample_slot
        n_total = n_pos + n_neg
        n_slots = len(samples.slot_owner)
        sum_loss = recipe.loss_reduction == "sum"
        scale = np.ones(len(n_total), np.float32) if sum_loss else (1.0 / n_total).astype(np.float32)
        # Index arrays in the sparse product's own index type, so it takes them without a copy.
        index_type = np.int32 if n_slots < 2**31 else np.int64
        slot_indptr = np.zeros(len(slot_count) + 1, dtype=index_type)
        np.cumsum(slot_count, out=slot_indptr[1:])
        return cls(
            samples.slot_owner,
            np.bincount(sample_slot, minlength=n_slots).astype(np.float32),
            np.bincount(sample_slot[: int(n_pos.sum())], minlength=n_slots).astype(np.float32),
            np.take(scale, samples.slot_owner),
            n_total,
            slot_indptr,
            np.arange(n_slots, dtype=index_type),
        )


def _gmf_gradients(layout: _GMFLayout, items, user, weight, bias, item_rate: float):
    """(logits, the step −item_rate·∂v per slot, ∂u, ∂h, ∂b per client) at the current
    parameters; the item step comes scaled because it is the largest array, and one pass over
    it fewer is worth it."""
    # Summed over a slot's samples, e = σ(z) − y is (its samples)·σ(z) − (its positives), and
    # ∂v = u⊙h · that sum. ∂u = h ⊙ Σ e·v and ∂h = u ⊙ Σ e·v need one sum per client over its
    # slots: a sparse (client × slot) product, which adds each client's slots in their order.
    uh_slot = np.take(user * weight, layout.slot_owner, axis=0)
    z = np.einsum("sd,sd->s", items, uh_slot)
    z += np.take(bias[:, 0], layout.slot_owner)
    e = np.negative(z)  # σ(z), in place
    np.exp(e, out=e)
    e += 1
    np.reciprocal(e, out=e)
    e *= layout.slot_samples
    e -= layout.slot_positives
    e *= layout.slot_scale
    per_client = sparse.csr_array((e, layout.slot_index, layout.slot_indptr), shape=(len(user), len(z)))
    sums = per_client @ items
    sum_e = np.add.reduceat(e, layout.slot_indptr[:-1])[:, None]
    step = np.multiply(uh_slot, (np.float32(-item_rate) * e)[:, None], out=uh_slot)
    return z, step, weight * sums, user * sums, sum_e


def _client_losses(layout: _GMFLayout, z: np.ndarray) -> np.ndarray:
    """Each client's mean BCE with logits over its samples, from its slots' logits: a slot adds
    (its samples)·softplus(z) − (its positives)·z, softplus(z) = max(z, 0) + log(1 + e^−|z|)."""
    loss = np.abs(z)
    np.negative(loss, out=loss)
    np.exp(loss, out=loss)
    np.log1p(loss, out=loss)
    loss += np.maximum(z, 0)
    loss *= layout.slot_samples
    loss -= layout.slot_positives * z
    return (np.add.reduceat(loss, layout.slot_indptr[:-1]) / layout.n_total).astype(np.float32)


def gmf_multiply_adds(n_samples: float, dim: int, epochs: int) -> float:
    """The multiply-adds of GMF's local passes over ``n_samples`` samples (positives and
    negatives) of width ``dim``, ``epochs`` steps each, as the gradient above is written: per
    sample and step the logit Σ_k (u⊙h)_k v_k, the item gradient e·u⊙h and the sum Σ e·v that
    ∂u and ∂h share, 3·dim in all. Per-client terms (u⊙h, the dense and user steps) are left
    out: a client has many samples."""
    return 3.0 * dim * n_samples * epochs
