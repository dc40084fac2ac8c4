"""The contract every server optimizer keeps, and the registry from config kind to module.

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


def make_server_optimizer(config, lr: float) -> ServerOptimizer:
    """The optimizer of ``config`` (an ``fl.server_optimizer`` model) with step size ``lr``."""
    from cluster.fl.server_optimizers import adagrad, adam, momentum, sgd, yogi

    build = {
        "sgd": sgd.SGD,
        "momentum": momentum.Momentum,
        "adagrad": adagrad.Adagrad,
        "adam": adam.Adam,
        "yogi": yogi.Yogi,
    }[config.kind]
    settings = config.model_dump(exclude={"kind"})
    return build(lr=lr, **settings)


def copied(arrays: Arrays) -> Arrays:
    return {name: value.copy() for name, value in arrays.items()}


def loaded(arrays: Arrays) -> Arrays:
    return {name: np.array(value, dtype=np.float32) for name, value in arrays.items()}
