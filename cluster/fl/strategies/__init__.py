"""Federated strategies as plug-ins of the round loop: one folder each (``fedavg/``, ...), whose
``__init__.py`` exports ``STRATEGY`` (``base.StrategyPlugin``). Past the lookup by
``fl.strategy.kind`` the server, the round loop and the worker cores never read a strategy's kind;
adding one is a folder here and its config model in ``configs/fl_schema.py``."""

from __future__ import annotations

import importlib
from typing import Optional

import numpy as np

from cluster.fl.strategies.base import (
    AveragingStrategy,
    DeviceHalf,
    ExtraPayload,
    Strategy,
    StrategyContext,
    StrategyPlugin,
)

__all__ = [
    "AveragingStrategy",
    "DeviceHalf",
    "ExtraPayload",
    "Strategy",
    "StrategyContext",
    "StrategyPlugin",
    "check_device_state",
    "client_metadata",
    "device_half",
    "make_strategy",
    "plugin",
    "plugin_of",
    "plugin_of",
    "recipe_settings",
]


def plugin(cfg) -> StrategyPlugin:
    """The ``STRATEGY`` of ``cfg``'s kind (``fl.strategy``)."""
    return plugin_of(cfg.kind)


def plugin_of(kind: str) -> StrategyPlugin:
    """The ``STRATEGY`` of the folder named ``kind``."""
    try:
        module = importlib.import_module(f"{__name__}.{kind}")
    except ModuleNotFoundError as exc:
        if exc.name != f"{__name__}.{kind}":
            raise
        raise ValueError(f"unknown fl.strategy.kind {kind!r}: no folder cluster/fl/strategies/{kind}/") from None
    return module.STRATEGY


def make_strategy(cfg, context: StrategyContext) -> Strategy:
    """The server half of ``cfg``'s strategy."""
    return plugin(cfg).server(cfg, context)


def device_half(cfg) -> DeviceHalf:
    """The device half every worker core of a run calls (a strategy without one changes nothing)."""
    return plugin(cfg).device(cfg)


def recipe_settings(cfg) -> dict:
    """What ``cfg``'s strategy changes in every client's local recipe, as ``LocalRecipe`` fields,
    so a model family never reads a strategy's kind."""
    return plugin(cfg).recipe_settings(cfg)


def check_device_state(cfg, spec, clients_per_worker: int) -> None:
    """Refuse (ValueError) a strategy whose per-client device state would not fit a worker."""
    plugin(cfg).check_device_state(cfg, spec, clients_per_worker)


def client_metadata(cfg, world) -> Optional[np.ndarray]:
    """The per-client columns ``cfg``'s strategy reads on the server (``FleetView.metadata``),
    or None for a strategy that reads none."""
    return plugin(cfg).client_metadata(cfg, world)
