"""Ditto: FedAvg's global model, and a personal dense part on every phone that serves it."""

from cluster.fl.strategies.base import StrategyPlugin
from cluster.fl.strategies.ditto.device import PersonalModels
from cluster.fl.strategies.ditto.server import Ditto, recipe_settings

STRATEGY = StrategyPlugin(
    title="Ditto",
    server=lambda cfg, context: Ditto(context.sampler),
    device=lambda cfg: PersonalModels(cfg.ditto_lambda),
    recipe_settings=recipe_settings,
)
