"""Pick the exposure policy a retriever runs, from its config section."""

from __future__ import annotations

from typing import Union

from cluster.retrieval.baselines import KNeighbor, MinRegularizer, TopK
from cluster.retrieval.fairsync import DualVector, ExposureTargets
from configs.schema import RetrievalConfig

Policy = Union[DualVector, TopK, KNeighbor, MinRegularizer]


def exposure_targets(cfg: RetrievalConfig, n_groups: int, horizon: int) -> ExposureTargets:
    """m_g = share · T·K/G for every group: the fraction of an equal split each group is owed."""
    return ExposureTargets.uniform(cfg.exposure_share * horizon * cfg.k / n_groups, n_groups, horizon, cfg.k)


def make_policy(cfg: RetrievalConfig, targets: ExposureTargets, batch: int | None = None) -> Policy:
    factories = {
        "fairsync": lambda: DualVector(targets, batch or cfg.dual_batch_size, cfg.dual_lr, cfg.dual_optimizer,
                                       cfg.dual_variant),
        "topk": lambda: TopK(targets),
        "k_neighbor": lambda: KNeighbor(targets, min(cfg.k_neighbor_groups, len(targets.m))),
        "min_regularizer": lambda: MinRegularizer(targets, cfg.min_regularizer_lambda),
    }
    return factories[cfg.policy]()

