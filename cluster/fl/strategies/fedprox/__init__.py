"""FedProx: FedAvg's server, a proximal term in every client's local objective."""

from cluster.fl.strategies.base import StrategyPlugin
from cluster.fl.strategies.fedprox.server import FedProx, recipe_settings

STRATEGY = StrategyPlugin(
    title="FedProx", server=lambda cfg, context: FedProx(context.sampler), recipe_settings=recipe_settings
)
