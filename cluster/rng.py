"""Named random streams: every stochastic step gets its own Generator derived from the run seed
and a purpose name, so adding a step never shifts the draws of another."""

from __future__ import annotations

import zlib

import numpy as np


def stream(seed: int, purpose: str, *extra: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([seed, zlib.crc32(purpose.encode()), *extra]))
