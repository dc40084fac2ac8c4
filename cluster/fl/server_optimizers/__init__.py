"""Server optimizers: how the aggregator applies the round's averaged client update Δ to the global
model (Reddi et al. 2021). A plug-in is the module named by its config kind
(``fl.server_optimizer.kind: adam`` → ``adam.py``), whose ``OPTIMIZER`` is built with the kind's
settings; adding one is a module here and its config model in ``configs/server_optimizer_schema.py``."""

from __future__ import annotations

import importlib

from cluster.fl.server_optimizers.base import ServerOptimizer

__all__ = ["ServerOptimizer", "make_server_optimizer"]


def make_server_optimizer(config, lr: float) -> ServerOptimizer:
    """The optimizer of ``config`` (an ``fl.server_optimizer`` model) with step size ``lr``."""
    module = importlib.import_module(f"{__name__}.{config.kind}")
    return module.OPTIMIZER(lr=lr, **config.model_dump(exclude={"kind"}))
