"""A device's upload under secure aggregation: one vector of a fixed public layout (every tensor of
the model whole, whatever the device trained or touched, then a few count slots), weighted,
optionally clipped and noised (distributed DP), encoded and masked on the device. What leaves the
worker is a ``MaskedUpload``: uniform-looking field elements, never a client's update."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from cluster.fl.types import ClientUpdate
from cluster.privacy.central_dp import update_norms
from cluster.privacy.secure_agg import SecureRound, device_key, mask, neighbour_graph
from cluster.rng import stream


@dataclass(frozen=True)
class UploadLayout:
    """The public shape of every upload of a run: ``dense`` (name, shape) tensors sent whole,
    ``rows`` (name, n_rows, d) tables whose rows are sent sparsely in the clear and whole here,
    then ``n_widths`` weight slots (one per Channel width; one otherwise) and, when
    ``loss_slot``, the weighted training loss."""

    dense: tuple[tuple[str, tuple[int, ...]], ...]
    rows: tuple[tuple[str, int, int], ...]
    n_widths: int = 1
    loss_slot: bool = True

    @classmethod
    def of(cls, update: ClientUpdate, params: dict[str, np.ndarray], n_widths: int, loss_slot: bool) -> UploadLayout:
        dense = tuple((name, tuple(params[name].shape)) for name in sorted(update.dense_deltas))
        rows = tuple((name, *params[name].shape) for name in sorted(update.item_deltas))
        return cls(dense, rows, n_widths, loss_slot)

    @property
    def model_size(self) -> int:
        return sum(int(np.prod(shape)) for _, shape in self.dense) + sum(n * d for _, n, d in self.rows)

    @property
    def size(self) -> int:
        return self.model_size + self.n_widths + int(self.loss_slot)

    def vectors(self, update: ClientUpdate, weights: np.ndarray, width_slot: np.ndarray) -> np.ndarray:
        """(C, size) float64: each client's weighted tensors flattened in layout order (its
        unsent rows zero), its weight in its width's slot, and its weighted loss."""
        n = len(update.clients)
        out = np.zeros((n, self.size), np.float64)
        start = 0
        for name, shape in self.dense:
            size = int(np.prod(shape))
            out[:, start : start + size] = update.dense_deltas[name].reshape(n, size) * weights[:, None]
            start += size
        for name, n_rows, dim in self.rows:
            columns = start + update.item_ids[:, None] * dim + np.arange(dim)
            out[update.row_owner[:, None], columns] = update.item_deltas[name] * weights[update.row_owner, None]
            start += n_rows * dim
        if self.n_widths:
            out[np.arange(n), start + width_slot] = weights
        if self.loss_slot:
            out[:, -1] = weights * update.loss
        return out

    def split(self, vector: np.ndarray) -> tuple[dict[str, np.ndarray], np.ndarray, float]:
        """A summed vector back into (tensors, the weight slots (n_widths,), the loss slot)."""
        tensors, start = {}, 0
        for name, shape in self.dense:
            size = int(np.prod(shape))
            tensors[name] = vector[start : start + size].reshape(shape)
            start += size
        for name, n_rows, dim in self.rows:
            tensors[name] = vector[start : start + n_rows * dim].reshape(n_rows, dim)
            start += n_rows * dim
        slots = vector[start : start + self.n_widths]
        loss = float(vector[-1]) if self.loss_slot else float("nan")
        return tensors, slots, loss


@dataclass(frozen=True)
class MaskedUpload:
    """What a worker's surviving devices send: their ids (public: the server sees who uploads),
    their masked vectors (C, layout.size) in the field, the public layout, and how many entries
    the field's range clipped."""

    clients: np.ndarray
    masked: np.ndarray
    layout: UploadLayout
    clipped_entries: int = 0


def device_weights(update: ClientUpdate, secure: SecureRound) -> np.ndarray:
    """(C,) each device's weight: its sample count over the public scale, or under distributed
    DP its clip factor min(1, C / ‖update‖) (every device then weighs the same)."""
    if secure.dp is not None:
        clip_norm = secure.dp[0]
        return np.minimum(1.0, clip_norm / np.maximum(update_norms(update), 1e-12))
    return np.asarray(update.n_samples, np.float64) / secure.weight_scale


def masked_upload(
    update: ClientUpdate, params: dict[str, np.ndarray], secure: SecureRound, key: int, seed: int
) -> MaskedUpload:
    """The uploads of ``update``'s clients that do not drop out, as their devices mask them.
    Under distributed DP each device adds its share of the noise before encoding; its loss is
    not sent (the noise does not cover it)."""
    keep = ~np.isin(update.clients, secure.dropped)
    # Under DP only the noised model leaves the phone: its weight and loss are not covered.
    private = secure.dp is not None
    layout = UploadLayout.of(update, params, 0 if private else len(secure.widths), loss_slot=not private)
    if not keep.any():
        return MaskedUpload(np.zeros(0, np.int64), np.zeros((0, layout.size), secure.field.dtype), layout)
    widths = np.ones(len(update.clients)) if update.fractions is None else update.fractions
    width_slot = np.searchsorted(np.asarray(secure.widths), widths)
    weights = device_weights(update, secure)
    graph = neighbour_graph(secure.cohort, secure.degree, secure.graph_seed, secure.round_index)
    senders = np.flatnonzero(keep)
    # One device's float vector at a time: the worker holds its senders' masked uploads (k bits
    # an entry) and one device's working copy, never every device's in float64.
    masked = np.empty((len(senders), layout.size), secure.field.dtype)
    clipped = 0
    for position, row in enumerate(senders):
        client = int(update.clients[row])
        vector = layout.vectors(_one(update, int(row)), weights[[row]], width_slot[[row]])[0]
        if secure.dp is not None:
            noise = stream(seed, "distributed-dp-noise", secure.round_index, client).normal(
                0.0, secure.dp[1], size=layout.model_size
            )
            vector[: layout.model_size] += noise
        encoded, n_clipped = secure.field.encode(vector, len(secure.cohort))
        clipped += n_clipped
        masked[position] = mask(encoded, client, secure, graph[client], key)
    return MaskedUpload(update.clients[keep], masked, layout, clipped)


def _one(update: ClientUpdate, row: int) -> ClientUpdate:
    """The upload of the client at ``row`` alone (its sent rows are one run: rows are grouped by owner)."""
    rows = slice(*np.searchsorted(update.row_owner, [row, row + 1]))
    return ClientUpdate(
        clients=update.clients[[row]],
        n_samples=update.n_samples[[row]],
        loss=update.loss[[row]],
        dense_deltas={name: value[[row]] for name, value in update.dense_deltas.items()},
        item_ids=update.item_ids[rows],
        row_owner=np.zeros(rows.stop - rows.start, np.int32),
        item_deltas={name: value[rows] for name, value in update.item_deltas.items()},
    )


@dataclass(frozen=True)
class Masking:
    """The devices' side of a secure round: every upload leaves its worker masked."""

    secure: SecureRound

    def apply(self, update: ClientUpdate, params: dict[str, np.ndarray], seed: int) -> MaskedUpload:
        return masked_upload(update, params, self.secure, device_key(seed), seed)
