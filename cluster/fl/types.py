"""What travels between the server and the client workers, as plain numpy dataclasses: the
clients' uploads (``LocalResult`` for the NCF models, ``ClickLocalResult`` for the click models)
and what the server tells them each round (``NCFSettings``, ``ClientSettings``, Cali3F's
``ClusterView``).

Nothing here imports torch: the aggregator reads these types but never trains, and a torch
import costs seconds of CPU in every process that makes it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

import numpy as np

from configs.fl_schema import TouchedUpload, UploadConfig


@dataclass(frozen=True)
class LocalResult:
    """Updates of C clients, in the order they were given.

    clients, n_samples (positives), touched_rows: (C,); loss: (C,) mean BCE at the global model;
    item_ids, row_owner: (R,), rows grouped by owner (index into clients), items ascending;
    item_deltas[table]: (R, d); dense_deltas[name]: (C, *shape). This is exactly what the
    clients upload: their new private user vectors are returned apart and never leave them.
    With ``LocalRecipe.ranking_bits`` each client also reports, for CEAG, whether the model it
    received scores each of its positives above each of that positive's sampled negatives:
    correct (Σ correct_counts,) 0/1 float32, client after client; correct_counts (C,).
    """

    clients: np.ndarray
    n_samples: np.ndarray
    loss: np.ndarray
    touched_rows: np.ndarray
    item_ids: np.ndarray
    row_owner: np.ndarray
    item_deltas: dict[str, np.ndarray]
    dense_deltas: dict[str, np.ndarray]
    # Cali3F delegates add their pass at the cluster model and their user-vector change (eq. 4).
    cluster_dense_deltas: Optional[dict[str, np.ndarray]] = None
    user_deltas: Optional[dict[str, np.ndarray]] = None
    correct: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32))
    correct_counts: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    # RF²'s Channel: the width (C,) each client trained; None when every client trained it all.
    fractions: Optional[np.ndarray] = None


@dataclass(frozen=True)
class ClickLocalResult:
    """Updates of C clients, in the order they were given (or by client id after a merge).

    clients, n_samples: (C,) int64; loss: (C,) float32 mean BCE at the global model;
    fractions: (C,) float32 the width each client trained; deltas[name]: (C, *shape) float32,
    exactly zero outside the client's channel slice; correct: (Σ n_samples,) float32, 1 where
    the global model's prediction (click when p ≥ ½) matched a sample's label, client after
    client in the clients' order (CEAG's per-sample correctness, or with ``ranking_bits`` each client's
    pairwise bits; scalars only, no features); correct_counts: (C,) how many values each client reported;
    proxy_deltas[name]: (C, *shape), with ``ClickRecipe.proxy_gradient`` only (else empty);
    cluster_dense_deltas[name]: (C, *shape) of the dense part N, a Cali3F delegate's pass at its
    cluster's model (else None). user_deltas is always None: a click model has no user table.
    """

    clients: np.ndarray
    n_samples: np.ndarray
    loss: np.ndarray
    fractions: np.ndarray
    deltas: dict[str, np.ndarray]
    correct: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32))
    correct_counts: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    proxy_deltas: dict[str, np.ndarray] = field(default_factory=dict)
    cluster_dense_deltas: Optional[dict[str, np.ndarray]] = None
    user_deltas: None = None


@dataclass(frozen=True)
class NCFSettings:
    """What the server sends with a round's clients (C,): their upload compression (RF²), which
    item rows they upload (``upload``), the width (C,) of the sub-model each trains (RF²'s
    Channel; None: all full) and, under Cali3F, each one's cluster ``cluster_of`` (C,) with the
    cluster models' dense parts ``cluster_dense[name]`` (P, *shape)."""

    kind: str = "none"
    levels: Optional[np.ndarray] = None
    rescale_pruned: bool = False
    upload: UploadConfig = TouchedUpload()
    width: Optional[np.ndarray] = None
    cluster_of: Optional[np.ndarray] = None
    cluster_dense: Optional[dict[str, np.ndarray]] = None


@dataclass(frozen=True)
class ClusterView:
    """Cali3F's clusters as the server holds them: labels (n_users,), dense parts (P, *shape)."""

    labels: np.ndarray
    dense: dict[str, np.ndarray]


@dataclass(frozen=True)
class ClientSettings:
    """What the server asks of each client this round: width (C,) of its model, its upload
    compression ``kind`` at ``levels`` (C,) (prune share or bits), which embedding rows it
    uploads (``upload``), the share (C,) of its samples it trains on (None: all) and, under
    Cali3F, each one's cluster ``cluster_of`` (C,) with the cluster models' dense parts
    ``cluster_dense[name]`` (P, *shape)."""

    width: np.ndarray
    kind: str
    levels: np.ndarray
    rescale_pruned: bool = False
    upload: UploadConfig = TouchedUpload()
    sample_share: Optional[np.ndarray] = None
    cluster_of: Optional[np.ndarray] = None
    cluster_dense: Optional[dict[str, np.ndarray]] = None
