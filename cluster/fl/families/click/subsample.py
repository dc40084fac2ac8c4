"""A client's share of its local samples for one round (``fl.optimization`` kind subsample): a
slow phone that trains on fewer samples finishes sooner and still takes part, where exclusion
would leave its users out of the model altogether."""

from __future__ import annotations

import math

import numpy as np

from cluster.rng import stream


def subsample_rows(
    indptr: np.ndarray, rows: np.ndarray, clients: np.ndarray, shares: np.ndarray, seed: int, round_index: int
) -> tuple[np.ndarray, np.ndarray]:
    """The CSR (indptr (C + 1,), rows) with client ``c`` keeping ⌈shares[c]·n_c⌉ of its rows, at
    least one, drawn afresh each round from its own stream (seed, round, client id) so the draw
    does not depend on which worker holds it; kept rows stay in their original order."""
    kept = []
    for c, client in enumerate(clients):
        own = rows[indptr[c] : indptr[c + 1]]
        k = len(own) if shares[c] >= 1.0 else min(len(own), max(1, math.ceil(round(shares[c] * len(own), 9))))
        if k < len(own):
            own = own[np.sort(stream(seed, "subsample", round_index, int(client)).choice(len(own), k, replace=False))]
        kept.append(own)
    sizes = np.array([len(k) for k in kept], dtype=np.int64)
    return np.r_[0, np.cumsum(sizes)].astype(indptr.dtype), (np.concatenate(kept) if kept else rows[:0])
