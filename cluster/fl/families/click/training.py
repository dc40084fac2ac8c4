"""Federated local training of the click models (DLRM / DIN): every selected client runs its own
full-batch SGD on its own rated items (label = click) from the global model, many clients in one
batched tensor program; the server averages (masked, HeteroFL-style, when clients trained
narrowed models) and steps its optimizer.

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
from functools import partial
from typing import Optional

import numpy as np
import torch
import torch.nn.functional as F

from cluster.data.click_features import ClickFeatures, select_clients
from cluster.fairness.ranking import pairwise_bits
from cluster.fl.aggregation import ServerOptimizer, fedavg
from cluster.fl.families.click.batches import grouped_batches
from cluster.models.click import ClickSpec, channel_masks, channel_slices, narrow_params
from cluster.models.click_net import forward
from cluster.fl.types import ClientUpdate, channel_widths



@dataclass(frozen=True)
class ClickRecipe:
    """``epochs`` full-batch SGD steps at rate ``lr`` on the client's mean BCE (RF²: lr 1.0).
    ``ranking_bits``: the client reports CEAG the pairwise ranking bits of its samples
    (``cluster/fairness/ranking.py``) instead of each sample's correctness. ``proxy_gradient``:
    it also uploads −lr × the gradient of its mean pairwise logistic loss at the model it
    received (CEAG's pairwise primal proxy, ``cluster/fairness/ceag.pairwise_proxy_coefficients``).
    ``personal_lambda``: Ditto; each client also steps its personal dense part with this λ
    (``cluster/fl/families/click/personal.py``)."""

    epochs: int = 1
    lr: float = 1.0
    ranking_bits: bool = False
    proxy_gradient: bool = False
    personal_lambda: Optional[float] = None


def train_local_click(
    spec: ClickSpec,
    recipe: ClickRecipe,
    global_params: dict[str, np.ndarray],
    features: ClickFeatures,
    clients: np.ndarray,
    indptr: np.ndarray,
    rows: np.ndarray,
    fractions: np.ndarray | None = None,
    client_dense: Optional[dict[str, np.ndarray]] = None,
) -> ClientUpdate:
    """Train clients ``clients`` (C,), whose samples are the feature rows
    ``rows[indptr[c]:indptr[c+1]]``, each at width ``fractions[c]`` (default 1: the full model),
    from the global model or, for the tensors in ``client_dense[name]`` (C, *shape), from each
    client's own start (Cali3F: its cluster's dense part; full width only)."""
    fractions = np.ones(len(clients), np.float32) if fractions is None else np.asarray(fractions, np.float32)
    if client_dense is not None and (fractions != 1.0).any():
        raise ValueError("a per-client start (client_dense) needs full-width clients")
    out = _ClickOutputs.empty(spec, len(clients), recipe.proxy_gradient)
    start = {name: torch.from_numpy(np.ascontiguousarray(value, dtype=np.float32)) for name, value in global_params.items()}
    for fraction, chunk, real, batch, labels, mask, counts in grouped_batches(spec, features, indptr, rows, fractions):
        with one_thread():
            own = None if client_dense is None else {n: torch.from_numpy(v[chunk]) for n, v in client_dense.items()}
            first_loss, first_logits, chunk_deltas, chunk_proxy = _local_sgd(
                spec, recipe, narrow_params(spec, start, fraction), batch, labels, mask, counts, own)
        if fraction < 1.0:
            # CEAG compares the global (full-width) model — as evaluated and as the reference
            # was measured — so a narrow client also scores the full model.
            first_logits = _full_model_logits(spec, start, batch, len(counts))
        out.add(spec, chunk[:real], fraction, first_loss, _reported(recipe, first_logits, labels.numpy(), counts),
                chunk_deltas, chunk_proxy)
    return ClientUpdate(
        clients=np.asarray(clients, dtype=np.int64), n_samples=np.diff(indptr).astype(np.int64), loss=out.loss,
        dense_deltas=out.deltas, fractions=channel_widths(fractions), correct=np.concatenate(out.correct).astype(np.float32),
        correct_counts=np.array([len(c) for c in out.correct], dtype=np.int64), proxy_deltas=out.proxy_deltas,
    )


def _reported(recipe: ClickRecipe, logits: np.ndarray, labels: np.ndarray, counts: np.ndarray) -> list[np.ndarray]:
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
        return cls(zeros(), np.zeros(n_clients, dtype=np.float32), [np.zeros(0, np.float32)] * n_clients,
                   zeros() if with_proxy else {})

    def add(self, spec: ClickSpec, members: np.ndarray, fraction: float, first_loss, reported: list[np.ndarray],
            batch_deltas: dict[str, np.ndarray], batch_proxy: dict[str, np.ndarray]) -> None:
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
        logits = forward(spec, {name: value.unsqueeze(0).expand(n, *value.shape) for name, value in start.items()}, batch)
    return logits.numpy()


def _pairwise_logistic(logits: torch.Tensor, labels: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """(c,) each client's mean log(1 + exp(−(s_click − s_nonclick))) over its own (click,
    non-click) pairs, the differentiable form of its pairwise bits; 0 for a client without pairs."""
    real = mask > 0
    clicked, other = real & (labels >= 0.5), real & (labels < 0.5)
    pairs = (clicked.unsqueeze(2) & other.unsqueeze(1)).to(logits.dtype)
    losses = F.softplus(logits.unsqueeze(1) - logits.unsqueeze(2))  # [c, i, j]: softplus(s_j − s_i)
    return (losses * pairs).sum(dim=(1, 2)) / pairs.sum(dim=(1, 2)).clamp(min=1.0)


def _local_sgd(spec, recipe, narrow, batch, labels, mask, counts, own=None):
    """``recipe.epochs`` full-batch steps for c clients from the (narrowed) global ``narrow``
    (or, for the tensors in ``own[name]`` (c, *shape), from each client's own);
    returns their mean BCE before the first step (c,), the logits of the model they received
    (c, L), their deltas (c, *sliced shape) and, with ``recipe.proxy_gradient``, −lr × the
    gradient of their pairwise logistic loss at that model (else {})."""
    n = len(counts)
    start = {name: value.unsqueeze(0).expand(n, *value.shape) for name, value in narrow.items()} | (own or {})
    params = {name: value.clone().requires_grad_() for name, value in start.items()}
    count = torch.from_numpy(counts.astype(np.float32))
    first_loss, proxy = None, {}
    for _ in range(recipe.epochs):
        logits = forward(spec, params, batch)
        per_client = (F.binary_cross_entropy_with_logits(logits, labels, reduction="none") * mask).sum(dim=1) / count
        if first_loss is None:
            first_loss = per_client.detach().numpy().copy()
            first_logits = logits.detach().numpy().copy()
            if recipe.proxy_gradient:
                proxy_grads = torch.autograd.grad(_pairwise_logistic(logits, labels, mask).sum(), list(params.values()),
                                                  retain_graph=True, allow_unused=True)
                proxy = {name: (torch.zeros_like(p) if g is None else -recipe.lr * g).numpy()
                         for (name, p), g in zip(params.items(), proxy_grads)}
        grads = torch.autograd.grad(per_client.sum(), list(params.values()))
        with torch.no_grad():
            for param, grad in zip(params.values(), grads):
                param.sub_(recipe.lr * grad)
    with torch.no_grad():
        deltas = {name: (params[name] - start[name]).numpy() for name in params}
    return first_loss, first_logits, deltas, proxy


def fedavg_round(
    spec: ClickSpec,
    recipe: ClickRecipe,
    params: dict[str, np.ndarray],
    server: ServerOptimizer,
    features: ClickFeatures,
    user_indptr: np.ndarray,
    user_rows: np.ndarray,
    clients: np.ndarray,
    fractions: np.ndarray | None = None,
) -> ClientUpdate:
    """One in-process round: train ``clients`` (users with at least one row in the by-user CSR
    ``user_indptr``, ``user_rows``), average, and step ``server`` on ``params`` in place."""
    indptr, rows = select_clients(user_indptr, user_rows, clients)
    result = train_local_click(spec, recipe, params, features, clients, indptr, rows, fractions)
    server.step(params, fedavg(result, 0, channel_masks=partial(channel_masks, spec)))
    return result
