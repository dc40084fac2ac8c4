"""Cali3F: clusters of clients with calibrated cluster models, delegates per cluster, FastAgg."""

from cluster.fl.strategies.base import StrategyPlugin
from cluster.fl.strategies.cali3f.device import ClusterModels
from cluster.fl.strategies.cali3f.server import Cali3F, client_metadata

STRATEGY = StrategyPlugin(
    title="Cali3F",
    server=Cali3F,
    device=lambda cfg: ClusterModels(),
    client_metadata=client_metadata,
)
