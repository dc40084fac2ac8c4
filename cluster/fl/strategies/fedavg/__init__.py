"""FedAvg (McMahan et al. 2017): the plain averaging every strategy starts from."""

from cluster.fl.strategies.base import AveragingStrategy, StrategyPlugin

STRATEGY = StrategyPlugin(title="FedAvg", server=lambda cfg, context: AveragingStrategy(context.sampler))
