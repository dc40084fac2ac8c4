"""Local training of many clients at once: every client runs its own full-batch SGD on its own
positives plus hashed negatives, from the same global model, in one batched tensor program.

Clients are grouped by a padded sample length that depends only on the client itself, and
trained in batches of a fixed number of clients (``fixed_batches``), so a client's arithmetic
(shapes, reduction lengths, scatter order, kernels) is the same whichever other clients share
its batch or its worker — the reason results do not change with the number of worker actors.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Optional

import numpy as np
import torch

from cluster.arrays import ranges, sorted_unique
from cluster.fairness.ranking import positive_negative_bits
from cluster.fl.fixed_batches import padded_length, fixed_size_batches
from cluster.fl.families.ncf.client_items import dense_fits, distinct_pairs
from cluster.fl.families.ncf.gmf_training import PLAIN, FlatResult, FlatSamples, NCFOptions, train_flat_gmf
from cluster.fl.families.ncf.negatives import RoundKey, drawn_negatives, hashed_negatives
from cluster.fl.families.ncf.model import NCFSpec, channel_slices
from cluster.fl.families.ncf.net import batched_logits
from cluster.fl.local_sgd import ParamGroups, Proximal, Targets, local_sgd
from cluster.fl.recipe import LocalRecipe
from cluster.fl.types import ClientUpdate


@dataclass(frozen=True)
class ClientPositives:
    """The clients to train (C,) and their positives: client ``clients[c]``'s are
    ``items[indptr[c]:indptr[c+1]]``. ``positive_keys``: sorted ``client * n_items + item`` of (at
    least) these clients' positives, when the caller keeps them precomputed."""

    clients: np.ndarray
    indptr: np.ndarray
    items: np.ndarray
    positive_keys: Optional[np.ndarray] = None


def train_local(
    spec: NCFSpec,
    recipe: LocalRecipe,
    global_params: dict[str, np.ndarray],
    users: dict[str, np.ndarray],
    data: ClientPositives,
    draw: RoundKey,
    options: NCFOptions = PLAIN,
) -> tuple[ClientUpdate, dict[str, np.ndarray]]:
    """Train the clients ``data.clients`` (C,) on their positives and the negatives hashed for
    ``draw`` (the run's seed and the round), with private vectors ``users[table]`` (C, d), from
    ``global_params``, changed as ``options`` says: each client's own starting dense part, Ditto's
    proximal term, HeteroFL widths (default all 1) or SCAFFOLD's correction (``NCFOptions``).

    Returns the uploadable result and the clients' new private vectors (C, d) per table."""
    clients = data.clients
    n_pos, n_neg, neg_items = _negatives(spec, recipe, data, draw)
    samples = _client_samples(data.items, n_pos, n_neg, neg_items, spec.n_items)
    slots = _client_slots(samples, spec.n_items, len(clients))
    if spec.kind == "gmf":
        if options.fractions is not None and (np.asarray(options.fractions) != 1.0).any():
            raise ValueError("GMF has no hidden layer to narrow: every fraction must be 1")
        flat = FlatSamples(samples.n_pos, samples.n_neg, slots.count, slots.sample_slot_global, slots.owner, slots.item)
        return _gmf_update(
            recipe, clients, n_pos, flat, train_flat_gmf(spec, recipe, global_params, users, flat, options)
        )
    fractions = options.widths(len(clients))
    if options.correction is not None and (fractions != 1.0).any():
        raise ValueError("a control-variate correction needs full-width clients")
    parts = _train_groups(spec, recipe, global_params, users, samples, slots, options)
    result, new_users = _assemble(spec, recipe, clients, n_pos, parts)
    return (result if (fractions == 1.0).all() else replace(result, fractions=fractions)), new_users


def _train_groups(
    spec: NCFSpec,
    recipe: LocalRecipe,
    global_params: dict[str, np.ndarray],
    users: dict[str, np.ndarray],
    samples: "_Samples",
    slots: "_Slots",
    options: NCFOptions,
) -> list[tuple]:
    """The batched path: clients grouped by (padded length, width), in fixed-size batches."""
    keys = np.stack([padded_length(samples.n_total).astype(np.float64), options.widths(len(samples.n_total))], axis=1)
    parts = []
    for key in np.unique(keys, axis=0):
        for batch, n_real in fixed_size_batches(np.flatnonzero((keys == key).all(axis=1))):
            group = _padded_layout(batch, int(key[0]), samples, slots)
            part = _train_group(spec, recipe, global_params, users, group, float(key[1]), options)
            parts.append(_real_clients(part, n_real))
    return parts


def _negatives(spec: NCFSpec, recipe: LocalRecipe, data: ClientPositives, draw: RoundKey):
    """(positives (C,), negatives (C,) per client, the negatives' items): hashed draws that avoid
    each client's own positives."""
    n_items, n_clients = spec.n_items, len(data.clients)
    n_pos = np.diff(data.indptr).astype(np.int64)
    if (n_pos == 0).any():
        raise ValueError("every trained client needs at least one positive")
    n_neg = n_pos * recipe.negatives_per_positive
    # A batch small enough for a table over its (client, item) pairs looks its draws up there,
    # not in the worker's sorted keys; both answer the same, so the draws are the same.
    if dense_fits(n_clients, n_items, len(data.items) + int(n_neg.sum())):
        positive = np.zeros(n_clients * n_items, dtype=bool)
        positive[np.repeat(np.arange(n_clients) * n_items, n_pos) + data.items] = True
        return n_pos, n_neg, drawn_negatives(draw, data.clients, n_neg, lambda r, c: positive[r * n_items + c], n_items)
    positive_keys = data.positive_keys
    if positive_keys is None:
        pos_owner = np.repeat(np.arange(n_clients), n_pos)
        positive_keys = sorted_unique(data.clients[pos_owner].astype(np.int64) * n_items + data.items)
    return n_pos, n_neg, hashed_negatives(draw, data.clients, n_neg, positive_keys, n_items)


@dataclass(frozen=True)
class _Samples:
    """Every sample of the trained clients as a key ``row * n_items + item`` (row: the client's
    index among the clients): all positives, client after client, then all negatives, client
    after client; n_pos, n_neg (C,) per client."""

    n_pos: np.ndarray
    n_neg: np.ndarray
    key: np.ndarray

    @property
    def n_total(self) -> np.ndarray:
        return self.n_pos + self.n_neg

    def of_clients(self, members: np.ndarray) -> np.ndarray:
        """Where the samples of ``members`` are: each member's positives, then its negatives,
        member after member."""
        pos_start = np.cumsum(self.n_pos) - self.n_pos
        neg_start = self.n_pos.sum() + np.cumsum(self.n_neg) - self.n_neg
        starts = np.stack([pos_start[members], neg_start[members]], axis=1).reshape(-1)
        return ranges(starts, np.stack([self.n_pos[members], self.n_neg[members]], axis=1).reshape(-1))


def _client_samples(
    pos_items: np.ndarray, n_pos: np.ndarray, n_neg: np.ndarray, neg_items: np.ndarray, n_items: int
) -> _Samples:
    # Positives and negatives each stay in one block as they come, so no sample is moved: a
    # client's sums over its samples take its positives' block and its negatives' block.
    row_base = np.arange(len(n_pos), dtype=np.int64) * n_items
    key = np.empty(len(pos_items) + len(neg_items), dtype=np.int64)
    np.add(np.repeat(row_base, n_pos), pos_items, out=key[: len(pos_items)])
    np.add(np.repeat(row_base, n_neg), neg_items, out=key[len(pos_items) :])
    return _Samples(n_pos, n_neg, key)


@dataclass(frozen=True)
class _Slots:
    """Each client's distinct items become its local rows ("slots"), in ascending item order:
    owner, item (S,); count, start (C,) per client; per sample, its slot overall
    (``sample_slot_global``)."""

    owner: np.ndarray
    item: np.ndarray
    count: np.ndarray
    start: np.ndarray
    sample_slot_global: np.ndarray


def _client_slots(samples: _Samples, n_items: int, n_clients: int) -> _Slots:
    owner, item, sample_slot = distinct_pairs(n_clients, n_items, samples.key)
    bounds = np.searchsorted(owner, np.arange(n_clients + 1))  # slots come grouped by owner
    return _Slots(owner, item, np.diff(bounds), bounds[:-1], sample_slot)


def _real_clients(part: tuple, n_real: int) -> tuple:
    """A batch's results without the padding copies (the batch's positions ≥ n_real)."""
    members, first_loss, slot_row, items, item_deltas, dense_deltas, new_users, first_scores = part
    rows = slot_row < n_real
    return (
        members[:n_real],
        first_loss[:n_real],
        slot_row[rows],
        items[rows],
        {t: v[rows] for t, v in item_deltas.items()},
        {n: v[:n_real] for n, v in dense_deltas.items()},
        {t: v[:n_real] for t, v in new_users.items()},
        first_scores[:n_real],
    )


@dataclass(frozen=True)
class _PaddedGroup:
    """A batch of clients ``members`` (indices into the clients) as padded matrices: their
    sample counts ``counts`` (c,); per sample position, its slot, label and 1/0 mask (c, length),
    padding masked out; their slots' items ``local_items`` (c, max slots), and each real slot's
    (row, column) there, ``slot_row`` and ``slot_col``."""

    members: np.ndarray
    counts: np.ndarray
    slots: np.ndarray
    labels: np.ndarray
    mask: np.ndarray
    local_items: np.ndarray
    slot_row: np.ndarray
    slot_col: np.ndarray


def _padded_layout(members: np.ndarray, length: int, samples: _Samples, slots: _Slots) -> _PaddedGroup:
    """The batch ``members`` with every client's samples padded to ``length``."""
    c = len(members)
    n_total, n_slots = samples.n_total, slots.count
    max_slots = int(n_slots[members].max())
    row = np.repeat(np.arange(c), n_total[members])
    col = ranges(np.zeros(c, dtype=np.int64), n_total[members])
    src = samples.of_clients(members)
    sample_slots = np.zeros((c, length), dtype=np.int64)
    labels = np.zeros((c, length), dtype=np.float32)
    mask = np.zeros((c, length), dtype=np.float32)
    sample_slots[row, col] = slots.sample_slot_global[src] - slots.start[members][row]
    labels[row, col] = src < len(samples.key) - samples.n_neg.sum()
    mask[row, col] = 1.0

    slot_row = np.repeat(np.arange(c), n_slots[members])
    slot_col = ranges(np.zeros(c, dtype=np.int64), n_slots[members])
    slot_src = ranges(slots.start[members], n_slots[members])
    local_items = np.zeros((c, max_slots), dtype=np.int64)
    local_items[slot_row, slot_col] = slots.item[slot_src]
    return _PaddedGroup(members, n_total[members], sample_slots, labels, mask, local_items, slot_row, slot_col)


def _train_group(
    spec: NCFSpec,
    recipe: LocalRecipe,
    global_params: dict[str, np.ndarray],
    users: dict[str, np.ndarray],
    group: _PaddedGroup,
    fraction: float,
    options: NCFOptions,
) -> tuple:
    """One batch's local steps, every client at width ``fraction`` (``options.fractions`` is
    read by the caller, which groups clients by it)."""
    members, local_items, slot_row, slot_col = group.members, group.local_items, group.slot_row, group.slot_col
    client_dense, correction = options.client_dense, options.correction
    c = len(members)
    index = torch.from_numpy(local_items)
    items0 = {t: torch.from_numpy(global_params[t])[index] for t in spec.item_tables}
    narrow = channel_slices(spec, fraction) if fraction < 1.0 else None
    anchor = {n: torch.from_numpy(global_params[n])[narrow[n] if narrow else ()] for n in spec.dense_shapes()}
    if client_dense is None:
        dense0 = {n: v.unsqueeze(0).expand(c, *v.shape) for n, v in anchor.items()}
    else:
        dense0 = {n: torch.from_numpy(np.ascontiguousarray(client_dense[n][members])) for n in spec.dense_shapes()}
    items = {t: v.clone().requires_grad_() for t, v in items0.items()}
    dense = {n: v.clone().requires_grad_() for n, v in dense0.items()}
    user = {t: torch.from_numpy(users[t][members]).clone().requires_grad_() for t in spec.user_tables}
    slots_t, labels_t, mask_t = (
        torch.from_numpy(group.slots),
        torch.from_numpy(group.labels),
        torch.from_numpy(group.mask),
    )
    count = torch.from_numpy(group.counts.astype(np.float32))

    proximal = Proximal(options.prox_lambda, anchor) if options.prox_lambda else None
    own_correction = (
        None
        if correction is None
        else {n: torch.from_numpy(np.ascontiguousarray(v[members], dtype=np.float32)) for n, v in correction.items()}
    )
    first = local_sgd(
        recipe,
        ParamGroups(items, dense, user),
        lambda: batched_logits(spec, dense, user, items, slots_t),
        Targets(labels_t, mask_t, count),
        proximal,
        own_correction,
    )
    first_loss, first_logits = first.loss, first.logits
    first_scores = [first_logits[j, :n] for j, n in enumerate(group.counts)]

    with torch.no_grad():
        valid = torch.from_numpy(slot_col)
        owner_rows = torch.from_numpy(slot_row)
        item_deltas = {t: (items[t] - items0[t])[owner_rows, valid].numpy() for t in spec.item_tables}
        dense_deltas = {n: _widened(spec, (dense[n] - dense0[n]).numpy(), n, narrow) for n in spec.dense_shapes()}
        new_users = {t: user[t].detach().numpy() for t in spec.user_tables}
    return (
        members,
        first_loss,
        slot_row,
        local_items[slot_row, slot_col],
        item_deltas,
        dense_deltas,
        new_users,
        first_scores,
    )


def _widened(spec: NCFSpec, delta: np.ndarray, name: str, narrow: Optional[dict]) -> np.ndarray:
    """A narrow sub-model's delta (c, *slice shape) as the full tensor's (c, *shape), exactly
    zero outside the slice (masked out of the average: HeteroFL's "not trained")."""
    if narrow is None:
        return delta
    full = np.zeros((len(delta), *spec.dense_shapes()[name]), dtype=np.float32)
    full[(slice(None), *narrow[name])] = delta
    return full


def _assemble(
    spec: NCFSpec, recipe: LocalRecipe, clients: np.ndarray, n_pos: np.ndarray, parts
) -> tuple[ClientUpdate, dict[str, np.ndarray]]:
    n_clients = len(clients)
    scores: list = [None] * n_clients
    loss = np.zeros(n_clients, dtype=np.float32)
    dense = {n: np.zeros((n_clients, *s), dtype=np.float32) for n, s in spec.dense_shapes().items()}
    users = {t: np.zeros((n_clients, spec.dim), dtype=np.float32) for t in spec.user_tables}
    owners, item_ids = [], []
    deltas: dict[str, list[np.ndarray]] = {t: [] for t in spec.item_tables}
    for members, first_loss, slot_row, items, item_deltas, dense_deltas, new_users, first_scores in parts:
        loss[members] = first_loss
        for member, member_scores in zip(members, first_scores):
            scores[member] = member_scores
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
    result = ClientUpdate(
        clients=np.asarray(clients, dtype=np.int64),
        n_samples=n_pos,
        loss=loss,
        touched_rows=np.bincount(owner, minlength=n_clients),
        item_ids=np.concatenate(item_ids)[order].astype(np.int64),
        row_owner=owner[order].astype(np.int32),
        item_deltas={t: np.concatenate(v)[order] for t, v in deltas.items()},
        dense_deltas=dense,
    )
    if recipe.ranking_bits:
        positives, negatives = [s[:p] for s, p in zip(scores, n_pos)], [s[p:] for s, p in zip(scores, n_pos)]
        result = _with_ranking_bits(result, positives, negatives)
    return result, users


def _gmf_update(
    recipe: LocalRecipe, clients: np.ndarray, n_pos: np.ndarray, samples: FlatSamples, part: FlatResult
) -> tuple[ClientUpdate, dict[str, np.ndarray]]:
    """GMF's one flat part as the upload: its slots are already grouped by client, items ascending."""
    result = ClientUpdate(
        clients=np.asarray(clients, dtype=np.int64),
        n_samples=n_pos,
        loss=part.loss,
        touched_rows=samples.slot_count,
        item_ids=samples.slot_item.astype(np.int64, copy=False),
        row_owner=samples.slot_owner.astype(np.int32),
        item_deltas=part.item_deltas,
        dense_deltas=part.dense_deltas,
    )
    if recipe.ranking_bits:
        logits, n_positives = part.first_logits[samples.sample_slot], int(samples.n_pos.sum())  # per sample
        positive_scores = np.split(logits[:n_positives], np.cumsum(samples.n_pos)[:-1])
        negative_scores = np.split(logits[n_positives:], np.cumsum(samples.n_neg)[:-1])
        result = _with_ranking_bits(result, positive_scores, negative_scores)
    return result, part.users


def _with_ranking_bits(result: ClientUpdate, positive_scores: list, negative_scores: list) -> ClientUpdate:
    """``result`` with each client's pairwise ranking bits from its first-step scores of its
    positives and of its negatives."""
    bits = [positive_negative_bits(p, n) for p, n in zip(positive_scores, negative_scores)]
    return replace(
        result,
        correct=np.concatenate(bits).astype(np.float32),
        correct_counts=np.array([len(b) for b in bits], dtype=np.int64),
    )
