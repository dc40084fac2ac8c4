"""Ditto (Li et al. 2021) on the server: the global model is FedAvg's, so the server side is
FedAvg's; each selected client also steps its personal model toward its data and the global
one (``cluster/fl/ditto.py``, run by the worker core), which doubles its compute."""

from __future__ import annotations

from cluster.fl import ditto
from cluster.fl.strategies.base import FedAvg


class Ditto(FedAvg):
    compute_multiplier = ditto.COMPUTE_MULTIPLIER


def recipe_settings(cfg) -> dict:
    return {"personal_lambda": cfg.ditto_lambda}
