"""The contract every server optimizer keeps, and the array helpers their states share.

An optimizer updates the global parameters in place from the averaged update Δ of each tensor the
round moved; its state (moments, accumulators) is a tree of float32 arrays the aggregator's
checkpoint carries, so a resumed run steps exactly as an unbroken one."""

from __future__ import annotations

from typing import Protocol

import numpy as np

Arrays = dict[str, np.ndarray]


class ServerOptimizer(Protocol):
    lr: float

    def step(self, params: Arrays, delta: Arrays) -> None:
        """θ ← θ + (this optimizer's step from Δ), for every tensor in ``delta``."""

    def state_dict(self) -> dict:
        """Copies of every array the next step depends on."""

    def load_state_dict(self, state: dict) -> None:
        """Continue from ``state_dict()``'s output."""


def copied(arrays: Arrays) -> Arrays:
    return {name: value.copy() for name, value in arrays.items()}


def loaded(arrays: Arrays) -> Arrays:
    return {name: np.array(value, dtype=np.float32) for name, value in arrays.items()}
