"""The multiply-adds a click model's local training does, from the model's shapes (``model.py``)
and a client's samples and history pairs: the arithmetic a round cannot do without, against which
a benchmark measures how near it comes.

Counted are the matrix products of the model as it is specified — every layer's in × out, the
pairwise dots, the history's pooling (a weighted sum per pair), DIN's h ⊙ t — not the elementwise
activations, and one local step as three forward passes (the backward pass takes the gradient
of each product's weight and of its input, one forward's worth each)."""

from __future__ import annotations

import numpy as np

from cluster.fl.families.click.model import ClickSpec

STEP_PASSES = 3


def _mlp(n_in: int, hidden: tuple[int, ...], n_out: int) -> int:
    widths = (n_in, *hidden, n_out)
    return sum(a * b for a, b in zip(widths[:-1], widths[1:]))


def forward_per_sample(spec: ClickSpec) -> int:
    """Multiply-adds of one sample's forward pass, its history aside."""
    d, genre = spec.dim, spec.n_genres * spec.dim
    if spec.kind == "dlrm":
        n_dots = spec.n_vectors * (spec.n_vectors - 1) // 2
        bottom = _mlp(spec.n_dense, spec.bottom_hidden, d)
        return genre + bottom + n_dots * d + _mlp(d + n_dots, spec.top_hidden, 1)
    return genre + _mlp((len(spec.cats) + 3) * d + spec.n_dense, spec.top_hidden, 1)


def forward_per_pair(spec: ClickSpec) -> int:
    """Multiply-adds of one (sample, clicked item) pair's forward pass: its share of the pooling,
    and in DIN h ⊙ t and the attention."""
    if spec.kind == "dlrm":
        return spec.dim
    return 2 * spec.dim + _mlp(4 * spec.dim, spec.attention_hidden, 1)


def multiply_adds(spec: ClickSpec, n_samples, n_pairs, epochs: int = 1):
    """Multiply-adds of the local training of clients with ``n_samples`` samples and ``n_pairs``
    history pairs (scalars or arrays alike): ``epochs`` steps of three forward passes."""
    forward = forward_per_sample(spec) * np.asarray(n_samples) + forward_per_pair(spec) * np.asarray(n_pairs)
    return STEP_PASSES * epochs * forward
