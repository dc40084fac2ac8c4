"""Hold numpy's BLAS (OpenBLAS) to one thread while a block runs.

A worker actor gets one core, as torch does with ``set_num_threads(1)``: an OpenBLAS pool of
several threads would contend with the other workers on the node, and a benchmark that measures
one thread's rate must not be handed more than one."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from functools import lru_cache


@lru_cache(maxsize=1)
def _blas_controller():
    from threadpoolctl import ThreadpoolController  # finds the BLAS numpy loaded, whichever it is

    return ThreadpoolController()


@contextmanager
def blas_one_thread() -> Iterator[None]:
    with _blas_controller().limit(limits=1, user_api="blas"):
        yield
