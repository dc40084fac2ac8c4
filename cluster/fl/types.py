"""What travels between the server and the client workers, as plain numpy dataclasses: the
clients' uploads (``ClientUpdate``, one type for every model family) and what the server tells
them each round (``ClientSettings``, Cali3F's ``ClusterView``).

Nothing here imports torch: the aggregator reads these types but never trains, and a torch
import costs seconds of CPU in every process that makes it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

import numpy as np

from configs.fl_schema import TouchedUpload, UploadConfig


def _empty(dtype):
    return field(default_factory=lambda: np.zeros(0, dtype))


@dataclass(frozen=True)
class ClientUpdate:
    """What C clients upload after a round, in the order they were given (or by client id after
    a merge), for every model family. This is exactly what leaves the phones: an NCF client's
    new private user vector stays on its worker.

    clients, n_samples: (C,) int64; loss: (C,) mean BCE at the global model they received.
    dense_deltas[name]: (C, *shape), every parameter sent whole (the NCF dense part; every
    parameter of a click model, whose embedding tables are sent whole, zero on unsent rows).
    item_ids, row_owner (R,), item_deltas[table] (R, d): rows of the tables sent sparsely (the NCF
    item tables), grouped by owner (index into clients), items ascending; touched_rows (C,) the
    rows each client trained (NCF), else None.
    fractions (C,): RF²'s Channel, the width each client trained; None when every client
    trained the whole model (entries are then averaged over every client).
    correct (Σ correct_counts,) 0/1 float32, client after client, with correct_counts (C,): CEAG's
    per-sample measure (a click's correctness, or pairwise ranking bits).
    proxy_deltas[name] (C, *shape): CEAG's pairwise-logistic proxy gradient (click models).
    cluster_dense_deltas[name] (C, *shape): a Cali3F delegate's pass at its cluster's model;
    user_deltas[table] (C, d): its user-vector change (eq. 4; NCF only).
    control_deltas[name] (C, *shape): SCAFFOLD, the change of each client's control variate of
    the dense part.
    """

    clients: np.ndarray
    n_samples: np.ndarray
    loss: np.ndarray
    dense_deltas: dict[str, np.ndarray]
    item_ids: np.ndarray = _empty(np.int64)
    row_owner: np.ndarray = _empty(np.int32)
    item_deltas: dict[str, np.ndarray] = field(default_factory=dict)
    touched_rows: Optional[np.ndarray] = None
    fractions: Optional[np.ndarray] = None
    correct: np.ndarray = _empty(np.float32)
    correct_counts: np.ndarray = _empty(np.int64)
    proxy_deltas: dict[str, np.ndarray] = field(default_factory=dict)
    cluster_dense_deltas: Optional[dict[str, np.ndarray]] = None
    user_deltas: Optional[dict[str, np.ndarray]] = None
    control_deltas: Optional[dict[str, np.ndarray]] = None

    @property
    def train_loss(self) -> float:
        """The clients' sample-weighted mean loss (NaN with no clients, or none that trained)."""
        if not len(self.clients) or not self.n_samples.sum():
            return float("nan")
        return float(np.average(self.loss, weights=self.n_samples))


def channel_widths(fractions: np.ndarray) -> Optional[np.ndarray]:
    """``ClientUpdate.fractions`` for clients that trained at ``fractions``: None when all are whole."""
    fractions = np.asarray(fractions, np.float32)
    return None if (fractions == 1.0).all() else fractions


@dataclass(frozen=True)
class ClusterView:
    """Cali3F's clusters as the server holds them: labels (n_users,), dense parts (P, *shape)."""

    labels: np.ndarray
    dense: dict[str, np.ndarray]


@dataclass(frozen=True)
class ClientSettings:
    """What the server asks of a round's clients (C,), for every model family: their upload
    compression ``kind`` at ``levels`` (C,) (RF²'s prune share or bits; None: none), which
    embedding rows they upload (``upload``), the width (C,) of the sub-model each trains (RF²'s
    Channel; None: all whole), the share (C,) of its samples each trains on (None: all) and,
    under Cali3F, each one's cluster ``cluster_of`` (C,) with the cluster models' dense parts
    ``cluster_dense[name]`` (P, *shape); under SCAFFOLD, the server's control variate
    ``control[name]`` (*shape) of the dense part."""

    kind: str = "none"
    levels: Optional[np.ndarray] = None
    rescale_pruned: bool = False
    upload: UploadConfig = TouchedUpload()
    width: Optional[np.ndarray] = None
    sample_share: Optional[np.ndarray] = None
    cluster_of: Optional[np.ndarray] = None
    cluster_dense: Optional[dict[str, np.ndarray]] = None
    control: Optional[dict[str, np.ndarray]] = None

    def own_cluster_dense(self) -> dict[str, np.ndarray]:
        """Each client's cluster's dense part (C, *shape): what a Cali3F delegate trains at."""
        if self.cluster_of is None or self.cluster_dense is None:
            raise ValueError("these settings name no Cali3F clusters (cluster_of and cluster_dense)")
        return {n: v[self.cluster_of] for n, v in self.cluster_dense.items()}
