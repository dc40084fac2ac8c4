"""Fixed-shape client batches, so a client's floating-point result does not depend on its
companions. torch picks kernels by shape — a batch of one reduces along another path than a
batch of two, a narrow bmm's blocking changes with the batch count — so a client's last bits
would otherwise depend on how many clients share its worker and its batch."""

from __future__ import annotations

import numpy as np

BATCH_CLIENTS = 4


def fixed_size_batches(members: np.ndarray, size: int = BATCH_CLIENTS) -> list[tuple[np.ndarray, int]]:
    """``members`` in batches of exactly ``size`` clients, the last padded with copies of its
    first client (whose copies are trained and dropped). Returns (batch, how many of it are real)."""
    batches = []
    for start in range(0, len(members), size):
        real = members[start : start + size]
        batches.append((np.concatenate([real, np.full(size - len(real), real[0])]), len(real)))
    return batches


_LADDER = 8 * 2 ** np.arange(40, dtype=np.int64)


def padded_length(n: np.ndarray) -> np.ndarray:
    """The smallest power-of-two step (8, 16, 32, ...) that holds n samples: few groups, at most
    2× padding; the per-group overhead costs more than the padded arithmetic."""
    return _LADDER[np.searchsorted(_LADDER, n)]
