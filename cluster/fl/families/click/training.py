"""Federated local training of the click models (DLRM / DIN): every selected client runs its own
full-batch SGD on its own rated items (label = click) from the global model; the round loop's
server averages their updates (masked, HeteroFL-style, when clients trained narrowed models) and
steps its optimizer.

Each client trains alone, on its own unpadded samples, through the hand-written forward and
backward passes of ``kernel.py`` and the one recipe's steps (``cluster/fl/client_sgd.py``): its
arithmetic — shapes, reduction lengths, the order in which an embedding row's gradients are
added — is its own, the same whichever other clients train beside it (tested bit for bit). This
replaced one autograd program over a padded batch of a few clients of equal shape: the clients'
shapes are so varied that a round of 100 made some 40 such programs, whose per-operation and
autograd overheads cost several times the arithmetic.

Training holds numpy's BLAS to one thread (``cluster.blas.blas_one_thread``), as a worker actor's one
core would.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import Optional

import numpy as np

from cluster.fairness.ranking import pairwise_bits
from cluster.fl.client_sgd import HandModel, Outputs, client_sgd
from cluster.fl.families.click.features import ClickFeatures
from cluster.fl.families.click.kernel import backward, forward
from cluster.blas import blas_one_thread
from cluster.fl.families.click.model import ClickSpec, channel_slices, is_embedding, narrow_params
from cluster.fl.families.click.samples import ClientSamples, client_samples
from cluster.fl.recipe import LocalRecipe
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
    full = {name: np.ascontiguousarray(value, dtype=np.float32) for name, value in global_params.items()}
    # Each width's narrow model, made contiguous once: every client of that width starts from it.
    starts = {float(f): _narrow(spec, full, float(f)) for f in np.unique(fractions)}
    rates = {name: recipe.lr_item if is_embedding(name) else recipe.lr_dense for name in full}
    slices = {f: channel_slices(spec, f) for f in starts}
    with blas_one_thread():
        for c, samples in enumerate(client_samples(spec, features, indptr, data.rows)):
            fraction = float(fractions[c])
            start = starts[fraction]
            if client_dense is not None:
                start = start | {n: np.ascontiguousarray(v[c], dtype=np.float32) for n, v in client_dense.items()}
            own_correction = (
                None if correction is None else {n: np.asarray(v[c], np.float32) for n, v in correction.items()}
            )
            steps = client_sgd(
                recipe,
                start,
                rates,
                click_model(spec, samples),
                samples.labels,
                correction=own_correction,
                out=out.client(c, slices[fraction]),
            )
            # CEAG compares the global (full-width) model — as evaluated and as the reference was
            # measured — so a narrow client also scores the full model.
            logits = steps.logits if fraction == 1.0 else forward(spec, full, samples)[0]
            out.loss[c] = steps.loss
            out.correct[c] = _reported(recipe, logits, samples.labels)
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


def _narrow(spec: ClickSpec, params: dict[str, np.ndarray], fraction: float) -> dict[str, np.ndarray]:
    if fraction == 1.0:
        return params
    return {name: np.ascontiguousarray(value) for name, value in narrow_params(spec, params, fraction).items()}


def click_model(spec: ClickSpec, samples: ClientSamples, tables: bool = True) -> HandModel:
    """One client's model for ``client_sgd``; without ``tables`` its gradient skips the embedding
    tables (a personal step trains the dense part alone)."""
    return HandModel(
        partial(forward, spec, s=samples),
        lambda params, cache, dlogits, into=None: backward(spec, params, samples, cache, dlogits, tables, into),
    )


def _reported(recipe: LocalRecipe, logits: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """What a client reports CEAG about the model it received: every sample's correctness (a
    click when p ≥ ½), or with ``recipe.ranking_bits`` its pairwise bits."""
    if recipe.ranking_bits:
        return pairwise_bits(logits, labels)
    return ((logits >= 0) == (labels >= 0.5)).astype(np.float32)


@dataclass
class _ClickOutputs:
    """Per client (C,): the full-width delta of every tensor, the loss at the global model and
    the 0/1 correctness of each of its samples; filled one client at a time."""

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

    def client(self, c: int, slices: dict[str, tuple[slice, ...]]) -> Outputs:
        """Views of client c's slot at its width's ``slices`` (basic slicing: writing them fills
        the slot)."""
        return Outputs(
            {name: self.deltas[name][c][index] for name, index in slices.items()},
            {name: self.proxy_deltas[name][c][index] for name, index in slices.items()} if self.proxy_deltas else {},
        )
