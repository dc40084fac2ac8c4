"""Pick the exposure policy a retriever runs, from its config section."""

from __future__ import annotations

from typing import TypeVar, Union

from cluster.retrieval.baselines import KNeighbor, MinRegularizer, TopK
from cluster.retrieval.fairsync import DualVector, ExposureTargets
from configs.retrieval_policy import (
    FairSyncPolicy,
    KNeighborPolicy,
    MinRegularizerPolicy,
    PolicyConfig,
    TopKPolicy,
)
from configs.schema import RetrievalConfig

Policy = Union[DualVector, TopK, KNeighbor, MinRegularizer]
_AnyPolicy = TypeVar("_AnyPolicy", bound=Union[FairSyncPolicy, TopKPolicy, KNeighborPolicy, MinRegularizerPolicy])


def exposure_targets(cfg: RetrievalConfig, n_groups: int, horizon: int) -> ExposureTargets:
    """m_g = share · T·K/G for every group: the fraction of an equal split each group is owed."""
    return ExposureTargets.uniform(cfg.exposure_share * horizon * cfg.k / n_groups, n_groups, horizon, cfg.k)


def make_policy(policy: PolicyConfig, targets: ExposureTargets, batch: int | None = None) -> Policy:
    """The policy ``policy`` describes; ``batch`` overrides FairSync's B (the evaluation's sweep)."""
    if policy.kind == "fairsync":
        return DualVector(targets, batch or policy.batch_size, policy.lr, policy.optimizer, policy.variant)
    if policy.kind == "k_neighbor":
        return KNeighbor(targets, min(policy.groups, len(targets.m)))
    if policy.kind == "min_regularizer":
        return MinRegularizer(targets, policy.strength)
    return TopK(targets)


def configured(cfg: RetrievalConfig, default: _AnyPolicy) -> _AnyPolicy:
    """The configured policy where it is of ``default``'s kind, else ``default`` (an evaluation
    runs every kind, each with its configured settings where it has them)."""
    # Each kind is one class, so isinstance is the kind test, and it gives the result default's type.
    return cfg.policy if isinstance(cfg.policy, type(default)) else default


def fairsync_batch(cfg: RetrievalConfig) -> int:
    """FairSync's B as an evaluation runs it: the configured one, or the default."""
    return configured(cfg, FairSyncPolicy()).batch_size
