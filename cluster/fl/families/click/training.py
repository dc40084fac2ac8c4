"""Federated local training of the click models (DLRM / DIN): every selected client runs its own
full-batch SGD on its own rated items (label = click) from the global model, many clients in one
batched tensor program; the round loop's server averages their updates (masked, HeteroFL-style,
when clients trained narrowed models) and steps its optimizer.

Clients are grouped by (width fraction, padded sample count, padded history-pair count), all three
properties of the client alone, so its arithmetic — shapes, reduction lengths, the order in which
an embedding row's gradients are added — is the same whichever other clients share its batch
(tested bit-for-bit). The sum of the clients' losses is differentiated once: each client's loss
touches only its own copy of the parameters, so each copy's gradient is that client's own.

Training runs on one torch thread: a reduction to a small output (a bias gradient over a lone
client's many samples) is split across threads when the output is small, so the same client
would add its terms in a different order alone than in a batch (measured with 2 threads). One
thread also measured faster here — the clients are many small programs, not one large one.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Optional

import numpy as np
import torch

from cluster.fl.families.click.features import ClickFeatures
from cluster.fairness.ranking import pairwise_bits
from cluster.fl.families.click.batches import PaddedBatch, grouped_batches
from cluster.fl.local_sgd import ParamGroups, Targets, local_sgd
from cluster.fl.recipe import LocalRecipe
from cluster.fl.families.click.model import ClickSpec, channel_slices, is_embedding, narrow_params
from cluster.fl.families.click.net import forward
from cluster.fl.types import ClientUpdate, channel_widths


@dataclass(frozen=True)
class ClientRows:
    """The clients to train (C,) and their samples: client ``clients[c]``'s are the feature rows
    ``rows[indptr[c]:indptr[c+1]]``."""

    clients: np.ndarray
    indptr: np.ndarray
    rows: np.ndarray


@dataclass(frozen=True)
class ClickOptions:
    """How a strategy or a tier changes the clients' local training from plain training at w:
    ``fractions`` (C,), the width each client trains at (None: all 1, the full model);
    ``client_dense[name]`` (C, *shape), each client's own start for that tensor (Cali3F: its
    cluster's dense part); ``correction[name]`` (C, *shape), added to each client's gradient of
    that tensor at every step (SCAFFOLD). The last two need full-width clients."""

    fractions: Optional[np.ndarray] = None
    client_dense: Optional[dict[str, np.ndarray]] = None
    correction: Optional[dict[str, np.ndarray]] = None


PLAIN = ClickOptions()


def train_local_click(
    spec: ClickSpec,
    recipe: LocalRecipe,
    global_params: dict[str, np.ndarray],
    features: ClickFeatures,
    data: ClientRows,
    options: ClickOptions = PLAIN,
) -> ClientUpdate:
    """Train the clients ``data.clients`` (C,) on their feature rows of ``features`` from the
    global model, changed as ``options`` says: each client's width, its own start for some
    tensors, SCAFFOLD's correction (``ClickOptions``)."""
    clients, indptr, client_dense, correction = data.clients, data.indptr, options.client_dense, options.correction
    fractions = (
        np.ones(len(clients), np.float32) if options.fractions is None else np.asarray(options.fractions, np.float32)
    )
    if (client_dense is not None or correction is not None) and (fractions != 1.0).any():
        raise ValueError("a per-client start or correction needs full-width clients")
    out = _ClickOutputs.empty(spec, len(clients), recipe.proxy_gradient)
    start = {
        name: torch.from_numpy(np.ascontiguousarray(value, dtype=np.float32)) for name, value in global_params.items()
    }
    for fraction, chunk, real, batch in grouped_batches(spec, features, indptr, data.rows, fractions):
        with one_thread():
            own = None if client_dense is None else {n: torch.from_numpy(v[chunk]) for n, v in client_dense.items()}
            own_correction = (
                None
                if correction is None
                else {
                    n: torch.from_numpy(np.ascontiguousarray(v[chunk], dtype=np.float32)) for n, v in correction.items()
                }
            )
            first, chunk_deltas = _local_sgd(
                spec, recipe, narrow_params(spec, start, fraction), batch, own, own_correction
            )
        first_logits = first.logits
        if fraction < 1.0:
            # CEAG compares the global (full-width) model — as evaluated and as the reference
            # was measured — so a narrow client also scores the full model.
            first_logits = _full_model_logits(spec, start, batch.inputs, len(batch.counts))
        out.add(
            spec,
            chunk[:real],
            fraction,
            first.loss,
            _reported(recipe, first_logits, batch.labels.numpy(), batch.counts),
            chunk_deltas,
            first.proxy,
        )
    return ClientUpdate(
        clients=np.asarray(clients, dtype=np.int64),
        n_samples=np.diff(indptr).astype(np.int64),
        loss=out.loss,
        dense_deltas=out.deltas,
        fractions=channel_widths(fractions),
        correct=np.concatenate(out.correct).astype(np.float32),
        correct_counts=np.array([len(c) for c in out.correct], dtype=np.int64),
        proxy_deltas=out.proxy_deltas,
    )


def _reported(recipe: LocalRecipe, logits: np.ndarray, labels: np.ndarray, counts: np.ndarray) -> list[np.ndarray]:
    """What each client of a batch reports CEAG about the model it received: every sample's
    correctness (a click when p ≥ ½), or with ``recipe.ranking_bits`` its pairwise bits."""
    if recipe.ranking_bits:
        return [pairwise_bits(logits[j, :n], labels[j, :n]) for j, n in enumerate(counts)]
    correct = ((logits >= 0) == (labels >= 0.5)).astype(np.float32)
    return [correct[j, :n] for j, n in enumerate(counts)]


@dataclass
class _ClickOutputs:
    """Per client (C,): the full-width delta of every tensor, the loss at the global model and
    the 0/1 correctness of each of its samples; filled in one batch at a time."""

    deltas: dict[str, np.ndarray]
    loss: np.ndarray
    correct: list[np.ndarray]
    proxy_deltas: dict[str, np.ndarray]

    @classmethod
    def empty(cls, spec: ClickSpec, n_clients: int, with_proxy: bool = False) -> "_ClickOutputs":
        zeros = lambda: {name: np.zeros((n_clients, *shape), dtype=np.float32) for name, shape in spec.shapes().items()}  # noqa: E731
        return cls(
            zeros(),
            np.zeros(n_clients, dtype=np.float32),
            [np.zeros(0, np.float32)] * n_clients,
            zeros() if with_proxy else {},
        )

    def add(
        self,
        spec: ClickSpec,
        members: np.ndarray,
        fraction: float,
        first_loss,
        reported: list[np.ndarray],
        batch_deltas: dict[str, np.ndarray],
        batch_proxy: dict[str, np.ndarray],
    ) -> None:
        real = len(members)
        self.loss[members] = first_loss[:real]
        for j in range(real):
            self.correct[members[j]] = reported[j]
        for name, index in channel_slices(spec, fraction).items():
            # Basic slicing gives a view of the full array, so this writes the slice in place.
            self.deltas[name][(slice(None), *index)][members] = batch_deltas[name][:real]
            if self.proxy_deltas:
                self.proxy_deltas[name][(slice(None), *index)][members] = batch_proxy[name][:real]


@contextmanager
def one_thread() -> Iterator[None]:
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def _full_model_logits(spec, start, batch, n: int) -> np.ndarray:
    """(c, L) logits of the full global model on the batch."""
    with torch.no_grad(), one_thread():
        logits = forward(
            spec, {name: value.unsqueeze(0).expand(n, *value.shape) for name, value in start.items()}, batch
        )
    return logits.numpy()


def _local_sgd(spec, recipe, narrow, batch: PaddedBatch, own=None, correction=None):
    """The loop's steps for the c clients of ``batch`` from the (narrowed) global ``narrow`` (or,
    for the tensors in ``own[name]`` (c, *shape), from each client's own); returns what the first
    step saw and their deltas (c, *sliced shape)."""
    n = len(batch.counts)
    start = {name: value.unsqueeze(0).expand(n, *value.shape) for name, value in narrow.items()} | (own or {})
    params = {name: value.clone().requires_grad_() for name, value in start.items()}
    groups = ParamGroups(
        item={n: p for n, p in params.items() if is_embedding(n)},
        dense={n: p for n, p in params.items() if not is_embedding(n)},
    )
    first = local_sgd(
        recipe,
        groups,
        lambda: forward(spec, params, batch.inputs),
        Targets(batch.labels, batch.mask, torch.from_numpy(batch.counts.astype(np.float32))),
        correction=correction,
    )
    with torch.no_grad():
        deltas = {name: (params[name] - start[name]).numpy() for name in params}
    return first, deltas
