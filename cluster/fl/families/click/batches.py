"""Tensors for the click models' torch forward pass (``net.forward``): padded per-client batches,
the autograd reference that local training's kernel (``kernel.py``) is tested against, and flat
chunks of rows for evaluation under the global model.

A client's padded sample count L and history-pair count P depend only on the client itself (its
sample count and its total history length, each rounded up the power-of-two ladder of
``cluster/fl/fixed_batches.padded_length``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from cluster.arrays import ranges
from cluster.fl.families.click.features import ClickFeatures
from cluster.fl.fixed_batches import padded_length
from cluster.fl.families.click.model import ClickSpec
from cluster.fl.families.click.net import ClickBatch, forward


@dataclass(frozen=True)
class PaddedBatch:
    """A batch of c clients' padded samples: the model's ``inputs``, the ``labels`` and the 1/0
    sample ``mask`` (c, L), and each client's real sample count ``counts`` (c,)."""

    inputs: ClickBatch
    labels: torch.Tensor
    mask: torch.Tensor
    counts: np.ndarray


def padded_shape(
    spec: ClickSpec, features: ClickFeatures, indptr: np.ndarray, rows: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """(L, P) per client (C,) of the CSR (indptr (C + 1,), rows); every client needs a row."""
    n_rows = np.diff(indptr)
    if (n_rows == 0).any():
        raise ValueError("every trained client needs at least one sample")
    n_pairs = np.add.reduceat(np.minimum(features.prior_clicks[rows], spec.history_len).astype(np.int64), indptr[:-1])
    return padded_length(n_rows), padded_length(n_pairs)


def sample_batch(
    features: ClickFeatures,
    rows: np.ndarray,
    owner: np.ndarray,
    slot: np.ndarray,
    shape: tuple[int, int, int],
    history_len: int,
) -> tuple[ClickBatch, torch.Tensor, torch.Tensor]:
    """Rows ``rows`` (m,), grouped by ``owner`` (ascending), placed at (owner, slot) of a (C, L)
    grid with P history pairs per client, where ``shape`` = (C, L, P). Returns the batch, labels
    (C, L) and a 1/0 sample mask (C, L); padding samples point at item 0, padding pairs at
    sample 0 and item 0, and both are masked out."""
    n_clients, length, n_pairs = shape

    def place(index: tuple[np.ndarray, np.ndarray], values: np.ndarray, width: int, dtype) -> torch.Tensor:
        out = np.zeros((n_clients, width, *values.shape[1:]), dtype=dtype)
        out[index] = values
        return torch.from_numpy(out)

    at = (owner, slot)
    pair_row, pair_item, lengths = features.history(rows, history_len)
    pair_owner = owner[pair_row]
    per_owner = np.bincount(pair_owner, minlength=n_clients)
    pair_at = (pair_owner, np.arange(len(pair_row)) - np.repeat(np.cumsum(per_owner) - per_owner, per_owner))
    batch = ClickBatch(
        user_cats=place(at, features.user_cats[features.user[rows]], length, np.int64),
        item=place(at, features.item[rows], length, np.int64),
        genres=place(at, features.item_genres[features.item[rows]], length, np.float32),
        dense=place(at, features.dense[rows], length, np.float32),
        history=place(pair_at, pair_item, n_pairs, np.int64),
        history_sample=place(pair_at, slot[pair_row], n_pairs, np.int64),
        history_mask=place(pair_at, np.ones(len(pair_row), np.float32), n_pairs, np.float32),
        inv_count=place(at, (1.0 / np.maximum(lengths, 1))[:, None], length, np.float32),
    )
    mask = place(at, np.ones(len(rows), np.float32), length, np.float32)
    return batch, place(at, features.label[rows], length, np.float32), mask


def client_batch(
    spec: ClickSpec,
    features: ClickFeatures,
    indptr: np.ndarray,
    rows: np.ndarray,
    members: np.ndarray,
    length: int,
    n_pairs: int,
) -> PaddedBatch:
    """The padded batch of clients ``members`` (indices into the CSR), each its rows in CSR order."""
    counts = indptr[members + 1] - indptr[members]
    member_rows = rows[ranges(indptr[members], counts)]
    owner = np.repeat(np.arange(len(members)), counts)
    slot = ranges(np.zeros_like(counts), counts)
    batch, labels, mask = sample_batch(
        features, member_rows, owner, slot, (len(members), length, n_pairs), spec.history_len
    )
    return PaddedBatch(batch, labels, mask, counts)


@torch.no_grad()
def predict(
    spec: ClickSpec, params: dict[str, np.ndarray], features: ClickFeatures, rows: np.ndarray, chunk: int = 4096
) -> np.ndarray:
    """Click probabilities (len(rows),) under the global model, ``chunk`` rows at a time (one
    "client" holding many users' rows: the model reads every user feature per sample)."""
    global_params = {name: torch.from_numpy(value).unsqueeze(0) for name, value in params.items()}
    out = np.empty(len(rows), dtype=np.float32)
    for start in range(0, len(rows), chunk):
        part = rows[start : start + chunk]
        slot = np.arange(len(part))
        n_pairs = int(np.minimum(features.prior_clicks[part], spec.history_len).sum())
        batch, _, _ = sample_batch(
            features, part, np.zeros_like(slot), slot, (1, len(part), max(n_pairs, 1)), spec.history_len
        )
        out[start : start + len(part)] = torch.sigmoid(forward(spec, global_params, batch))[0].numpy()
    return out


def click_auc(spec: ClickSpec, params: dict[str, np.ndarray], features: ClickFeatures, rows: np.ndarray) -> float:
    """ROC AUC of the global model on ``rows`` (RF²'s click metric)."""
    from sklearn.metrics import roc_auc_score  # lazily: see cluster/fl/families/click/auc_metrics.py

    return float(roc_auc_score(features.label[rows], predict(spec, params, features, rows)))
