"""Ditto (Li, Hu, Beirami, Smith, ICML 2021) on the server: every client keeps a personal model v
regularised toward the global model w, which is itself trained by plain FedAvg, so the server side
is FedAvg's. Each selected client also takes personal steps on v (Alg. 1, the device half in
``device.py``), so it computes twice: what the virtual clock shows."""

from __future__ import annotations

from cluster.fl.strategies.base import AveragingStrategy

# Equal local work on the personal and the global model doubles a round's compute.
COMPUTE_MULTIPLIER = 2.0


class Ditto(AveragingStrategy):
    compute_multiplier = COMPUTE_MULTIPLIER


def recipe_settings(cfg) -> dict:
    return {"personal_lambda": cfg.ditto_lambda}
