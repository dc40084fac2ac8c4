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
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np


def _best_seconds(step: Callable[[], object], repeats: int) -> float:
    """The fastest of ``repeats`` timings of ``step``: the machine can only make a run slower,
    never faster."""
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        step()
        best = min(best, time.perf_counter() - started)
    return best


def elementwise_rate(n_elements: int, repeats: int = 7) -> float:
    """Multiply-adds per second of ``np.multiply(a, b, out=o); np.add(o, c, out=o)`` over
    float32 arrays of ``n_elements``, on this thread (the best of ``repeats``)."""
    n = max(int(n_elements), 1)
    rng = np.random.default_rng(0)
    a, b, c = (rng.random(n, dtype=np.float32) for _ in range(3))
    out = np.empty(n, np.float32)
    return n / _best_seconds(lambda: np.add(np.multiply(a, b, out=out), c, out=out), repeats)


def matrix_product_rate(size: int = 256, repeats: int = 7) -> float:
    """Multiply-adds per second of one thread's float32 ``size`` x ``size`` matrix product
    through numpy's BLAS (the best of ``repeats``); 256 already reaches BLAS's full one-core
    speed here (128: 49, 256: 52, 512: 53 G/s)."""
    from cluster.blas import blas_one_thread

    rng = np.random.default_rng(0)
    a, b = (rng.random((size, size), dtype=np.float32) for _ in range(2))
    out = np.empty((size, size), np.float32)
    with blas_one_thread():
        return size**3 / _best_seconds(lambda: np.matmul(a, b, out=out), repeats)


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
