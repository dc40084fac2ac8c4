"""Server optimizers: how the aggregator applies the round's averaged client update Δ to the global
model (Reddi et al. 2021). One module each; ``make_server_optimizer`` picks one from the config."""

from cluster.fl.server_optimizers.base import ServerOptimizer, make_server_optimizer

__all__ = ["ServerOptimizer", "make_server_optimizer"]
