"""How near a timed phase comes to the arithmetic it has to do: its multiply-adds at the rate one
thread does elementwise float32 multiply-adds on arrays as large as that arithmetic, measured on
the machine that runs the benchmark. A phase at fraction 1 would do nothing but its multiply-adds,
each one as cheap as in a plain numpy loop over memory; the fraction says how much of a phase's
time its bookkeeping (gathers, sorts, hashing, Python) takes.

A model whose arithmetic is mostly matrix products (the click models' dense layers) runs those
faster than elementwise passes, so it can exceed the elementwise limit; its honest limit is one
thread's matrix-product rate (``matrix_product_rate``), measured the same way.

A benchmark counts its model's multiply-adds itself and passes the count here."""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np


def elementwise_rate(n_elements: int, repeats: int = 7) -> float:
    """Multiply-adds per second of ``np.multiply(a, b, out=o); np.add(o, c, out=o)`` over
    float32 arrays of ``n_elements``, on this thread: the best of ``repeats`` timings, because
    the machine can only make a run slower, never faster."""
    n = max(int(n_elements), 1)
    rng = np.random.default_rng(0)
    a, b, c = (rng.random(n, dtype=np.float32) for _ in range(3))
    out = np.empty(n, np.float32)
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        np.multiply(a, b, out=out)
        np.add(out, c, out=out)
        best = min(best, time.perf_counter() - started)
    return n / best


def matrix_product_rate(size: int = 256, repeats: int = 7) -> float:
    """Multiply-adds per second of one thread's float32 ``size`` x ``size`` matrix product
    through numpy's BLAS: the best of ``repeats``. 256 is near the click models' largest layers and
    large enough for BLAS's full speed on one core."""
    from cluster.blas import blas_one_thread

    rng = np.random.default_rng(0)
    a, b = (rng.random((size, size), dtype=np.float32) for _ in range(2))
    out = np.empty((size, size), np.float32)
    best = float("inf")
    with blas_one_thread():
        for _ in range(repeats):
            started = time.perf_counter()
            np.matmul(a, b, out=out)
            best = min(best, time.perf_counter() - started)
    return size**3 / best


@dataclass(frozen=True)
class ArithmeticLimit:
    """A round's ``multiply_adds`` and the ``rate`` (multiply-adds per second) measured for them."""

    multiply_adds: float
    rate: float

    @property
    def seconds(self) -> float:
        """The round's multiply-adds at the elementwise rate: the least time a round can take."""
        return self.multiply_adds / self.rate

    def fraction(self, seconds: float) -> float:
        """The limit's share of a phase that took ``seconds`` a round: 1 at the limit, smaller
        the more time went to anything else."""
        return self.seconds / seconds
