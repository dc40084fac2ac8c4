"""Federated strategies as plug-ins of the round loop: FedAvg, FedProx, SCAFFOLD, Ditto, Cali3F (one module each,
``base.Strategy`` the contract). Past ``make_strategy`` the server and the round loop never read
a strategy's kind; only the experiment's build does, for what a kind needs before any round
(Ditto's personal step in the local recipe, Cali3F's metadata columns)."""

from __future__ import annotations

import importlib

import numpy as np

from cluster.fl.selection import EpochSampler
from cluster.fl.strategies.base import ExtraPayload, FedAvg, Strategy
from cluster.fl.strategies.ditto import Ditto

__all__ = ["ExtraPayload", "FedAvg", "Strategy", "check_device_state", "make_strategy", "recipe_settings"]


def _hook(cfg, name: str):
    """A strategy module's own ``name`` function (its device half before any round), or None:
    ``cluster/fl/strategies/<kind>.py`` defines what its kind needs, nothing here lists it."""
    try:
        module = importlib.import_module(f"cluster.fl.strategies.{cfg.kind}")
    except ModuleNotFoundError:  # fedavg lives in base.py and needs nothing before a round
        return None
    return getattr(module, name, None)


def recipe_settings(cfg) -> dict:
    """What ``cfg`` (``fl.strategy``) changes in every client's local recipe, as ``LocalRecipe``
    fields: the device half of a strategy, so a model family never reads a strategy's kind."""
    own = _hook(cfg, "recipe_settings")
    return own(cfg) if own is not None else {}


def check_device_state(cfg, spec, clients_per_worker: int) -> None:
    """Refuse (ValueError) a strategy whose per-client device state would not fit a worker."""
    check = _hook(cfg, "check_device_state")
    if check is not None:
        check(spec, clients_per_worker)


def make_strategy(
    cfg,
    ops,
    params: dict[str, np.ndarray],
    fleet,
    eligible: np.ndarray,
    sampler: EpochSampler,
    client_lr: float,
    seed: int,
) -> Strategy:
    """``cfg``: ``fl.strategy``; ``ops``: the model family's; ``params``: the initial global model;
    ``fleet``: the server's ``FleetView``; ``eligible`` (n,): who may be selected; ``sampler``:
    FedAvg's selection."""
    if cfg.kind == "fedavg":
        return FedAvg(sampler)
    if cfg.kind == "fedprox":
        from cluster.fl.strategies.fedprox import FedProx

        return FedProx(sampler)
    if cfg.kind == "scaffold":
        from cluster.fl.strategies.scaffold import Scaffold

        return Scaffold(sampler, {n: params[n] for n in ops.spec.dense_shapes()}, int(len(eligible)))
    if cfg.kind == "ditto":
        return Ditto(sampler)
    if cfg.kind == "cali3f":
        from cluster.fl.strategies.cali3f import Cali3F

        if fleet.metadata is None:
            raise ValueError("Cali3F needs the clients' metadata to form its first clusters (FleetView.metadata)")
        dense0 = {n: params[n] for n in ops.spec.dense_shapes()}
        return Cali3F(cfg, ops, fleet.metadata, eligible, fleet.train_samples, dense0, client_lr, seed)
    raise ValueError(f"unknown fl.strategy.kind {cfg.kind!r}")
