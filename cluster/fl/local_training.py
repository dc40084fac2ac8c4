"""Local training of many clients at once: every client runs its own full-batch SGD on its own
positives plus hashed negatives, from the same global model, in one batched tensor program.

Clients are grouped by a padded sample length that depends only on the client itself, so a
client's arithmetic (shapes, reduction lengths, scatter order) is the same whichever other
clients share its batch or its worker — the reason results do not change with the number of
worker actors.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from cluster.fl.negatives import hashed_negatives
from cluster.models.ncf import NCFSpec, batched_logits

_LADDER = 8 * 2 ** np.arange(40, dtype=np.int64)


@dataclass(frozen=True)
class LocalRecipe:
    """How a client trains: ``epochs`` full-batch SGD steps with a learning rate per parameter
    group; ``loss_reduction`` 'mean' averages the BCE over the client's samples, 'sum' adds it."""

    epochs: int
    lr_dense: float
    lr_item: float
    lr_user: float
    negatives_per_positive: int
    loss_reduction: str = "mean"


@dataclass(frozen=True)
class LocalResult:
    """Updates of C clients, in the order they were given.

    clients, n_samples (positives), touched_rows: (C,); loss: (C,) mean BCE at the global model;
    item_ids, row_owner: (R,), rows grouped by owner (index into clients), items ascending;
    item_deltas[table]: (R, d); dense_deltas[name]: (C, *shape). This is exactly what the
    clients upload: their new private user vectors are returned apart and never leave them.
    """

    clients: np.ndarray
    n_samples: np.ndarray
    loss: np.ndarray
    touched_rows: np.ndarray
    item_ids: np.ndarray
    row_owner: np.ndarray
    item_deltas: dict[str, np.ndarray]
    dense_deltas: dict[str, np.ndarray]


def padded_length(n: np.ndarray) -> np.ndarray:
    """The smallest power-of-two step (8, 16, 32, ...) that holds n samples: few groups, at most
    2× padding; the per-group overhead costs more than the padded arithmetic."""
    return _LADDER[np.searchsorted(_LADDER, n)]


def _ranges(starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """Concatenated ``arange(s, s + l)`` for each (s, l)."""
    offsets = np.cumsum(lengths) - lengths
    return np.repeat(starts - offsets, lengths) + np.arange(lengths.sum())


def train_local(
    spec: NCFSpec,
    recipe: LocalRecipe,
    global_params: dict[str, np.ndarray],
    users: dict[str, np.ndarray],
    clients: np.ndarray,
    pos_indptr: np.ndarray,
    pos_items: np.ndarray,
    seed: int,
    round_index: int,
) -> tuple[LocalResult, dict[str, np.ndarray]]:
    """Train clients ``clients`` (C,), whose positives are ``pos_items[pos_indptr[c]:pos_indptr[c+1]]``
    and whose private vectors are ``users[table]`` (C, d), from ``global_params``.

    Returns the uploadable result and the clients' new private vectors (C, d) per table."""
    n_items = spec.n_items
    n_clients = len(clients)
    n_pos = np.diff(pos_indptr).astype(np.int64)
    if (n_pos == 0).any():
        raise ValueError("every trained client needs at least one positive")
    pos_owner = np.repeat(np.arange(n_clients), n_pos)
    pos_keys = np.unique(clients[pos_owner].astype(np.int64) * n_items + pos_items)
    n_neg = n_pos * recipe.negatives_per_positive
    neg_items = hashed_negatives(seed, round_index, clients, n_neg, pos_keys, n_items)

    # Samples grouped by client: its positives first, then its negatives.
    owner = np.concatenate([pos_owner, np.repeat(np.arange(n_clients), n_neg)])
    order = np.argsort(owner, kind="stable")
    sample_owner = owner[order]
    sample_item = np.concatenate([pos_items, neg_items]).astype(np.int64)[order]
    sample_label = np.concatenate([np.ones(len(pos_items)), np.zeros(len(neg_items))]).astype(np.float32)[order]
    n_total = n_pos + n_neg
    sample_start = np.cumsum(n_total) - n_total

    # Each client's distinct items become its local rows ("slots").
    slot_keys, sample_slot_global = np.unique(sample_owner * n_items + sample_item, return_inverse=True)
    slot_owner = slot_keys // n_items
    slot_item = slot_keys % n_items
    n_slots = np.bincount(slot_owner, minlength=n_clients)
    slot_start = np.cumsum(n_slots) - n_slots
    sample_slot = sample_slot_global - slot_start[sample_owner]

    lengths = padded_length(n_total)
    parts = []
    for length in np.unique(lengths):
        members = np.flatnonzero(lengths == length)
        parts.append(
            _train_group(
                spec, recipe, global_params, users, members, int(length),
                sample_start, n_total, sample_slot, sample_label, slot_start, n_slots, slot_item,
            )
        )
    return _assemble(spec, clients, n_pos, parts)


def _train_group(spec, recipe, global_params, users, members, length, sample_start, n_total, sample_slot,
                 sample_label, slot_start, n_slots, slot_item):
    c = len(members)
    max_slots = int(n_slots[members].max())
    row = np.repeat(np.arange(c), n_total[members])
    col = _ranges(np.zeros(c, dtype=np.int64), n_total[members])
    src = _ranges(sample_start[members], n_total[members])
    slots = np.zeros((c, length), dtype=np.int64)
    labels = np.zeros((c, length), dtype=np.float32)
    mask = np.zeros((c, length), dtype=np.float32)
    slots[row, col] = sample_slot[src]
    labels[row, col] = sample_label[src]
    mask[row, col] = 1.0

    slot_row = np.repeat(np.arange(c), n_slots[members])
    slot_col = _ranges(np.zeros(c, dtype=np.int64), n_slots[members])
    slot_src = _ranges(slot_start[members], n_slots[members])
    local_items = np.zeros((c, max_slots), dtype=np.int64)
    local_items[slot_row, slot_col] = slot_item[slot_src]

    index = torch.from_numpy(local_items)
    items0 = {t: torch.from_numpy(global_params[t])[index] for t in spec.item_tables}
    dense0 = {n: torch.from_numpy(global_params[n]) for n in spec.dense_shapes()}
    items = {t: v.clone().requires_grad_() for t, v in items0.items()}
    dense = {n: v.unsqueeze(0).expand(c, *v.shape).clone().requires_grad_() for n, v in dense0.items()}
    user = {t: torch.from_numpy(users[t][members]).clone().requires_grad_() for t in spec.user_tables}
    slots_t, labels_t, mask_t = torch.from_numpy(slots), torch.from_numpy(labels), torch.from_numpy(mask)
    count = torch.from_numpy(n_total[members].astype(np.float32))

    groups = [(list(items.values()), recipe.lr_item), (list(dense.values()), recipe.lr_dense), (list(user.values()), recipe.lr_user)]
    flat = [p for params, _ in groups for p in params]
    rates = [lr for params, lr in groups for _ in params]
    first_loss = None
    for _ in range(recipe.epochs):
        logits = batched_logits(spec, dense, user, items, slots_t)
        per_sample = F.binary_cross_entropy_with_logits(logits, labels_t, reduction="none") * mask_t
        per_client = per_sample.sum(dim=1)
        if first_loss is None:
            first_loss = (per_client.detach() / count).numpy()
        if recipe.loss_reduction == "mean":
            per_client = per_client / count
        grads = torch.autograd.grad(per_client.sum(), flat)
        with torch.no_grad():
            for param, grad, lr in zip(flat, grads, rates):
                param.sub_(lr * grad)

    with torch.no_grad():
        valid = torch.from_numpy(slot_col)
        owner_rows = torch.from_numpy(slot_row)
        item_deltas = {t: (items[t] - items0[t])[owner_rows, valid].numpy() for t in spec.item_tables}
        dense_deltas = {n: (dense[n] - dense0[n]).numpy() for n in spec.dense_shapes()}
        new_users = {t: user[t].detach().numpy() for t in spec.user_tables}
    return members, first_loss, slot_row, local_items[slot_row, slot_col], item_deltas, dense_deltas, new_users


def _assemble(spec: NCFSpec, clients: np.ndarray, n_pos: np.ndarray, parts) -> tuple[LocalResult, dict[str, np.ndarray]]:
    n_clients = len(clients)
    loss = np.zeros(n_clients, dtype=np.float32)
    dense = {n: np.zeros((n_clients, *s), dtype=np.float32) for n, s in spec.dense_shapes().items()}
    users = {t: np.zeros((n_clients, spec.dim), dtype=np.float32) for t in spec.user_tables}
    owners, item_ids = [], []
    deltas: dict[str, list[np.ndarray]] = {t: [] for t in spec.item_tables}
    for members, first_loss, slot_row, items, item_deltas, dense_deltas, new_users in parts:
        loss[members] = first_loss
        for n in dense:
            dense[n][members] = dense_deltas[n]
        for t in users:
            users[t][members] = new_users[t]
        owners.append(members[slot_row])
        item_ids.append(items)
        for t in deltas:
            deltas[t].append(item_deltas[t])
    owner = np.concatenate(owners)
    order = np.argsort(owner, kind="stable")  # rows of one client stay in ascending item order
    result = LocalResult(
        clients=np.asarray(clients, dtype=np.int64),
        n_samples=n_pos,
        loss=loss,
        touched_rows=np.bincount(owner, minlength=n_clients),
        item_ids=np.concatenate(item_ids)[order].astype(np.int64),
        row_owner=owner[order].astype(np.int32),
        item_deltas={t: np.concatenate(v)[order] for t, v in deltas.items()},
        dense_deltas=dense,
    )
    return result, users
