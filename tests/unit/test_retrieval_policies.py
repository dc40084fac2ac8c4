"""Baseline exposure policies, the policy factory, list metrics and group assignment."""

import numpy as np
import pytest

from cluster.retrieval.baselines import MASK, KNeighbor, MinRegularizer, TopK
from cluster.retrieval.catalog import encode_groups, popularity_groups
from cluster.retrieval.fairsync import DualVector, ExposureTargets
from cluster.retrieval.metrics import exposure_shortfall, list_metrics
from cluster.retrieval.policies import exposure_targets, make_policy
from configs.schema import RetrievalConfig

TARGETS = ExposureTargets(np.array([10.0, 10.0, 10.0]), horizon=20, k=5)


def test_topk_never_moves_but_counts_exposure():
    policy = TopK(TARGETS)
    assert not policy.observe(np.array([5.0, 0.0, 0.0]))
    assert policy.version == 0 and (policy.mu == 0).all() and policy.exposure.tolist() == [5, 0, 0]


def test_k_neighbor_allows_only_the_least_exposed_groups():
    policy = KNeighbor(TARGETS, nearest_k=2)
    assert policy.mu.tolist() == [0.0, 0.0, MASK]  # ties: the lowest group ids first
    assert policy.observe(np.array([5.0, 0.0, 0.0]))
    assert policy.mu.tolist() == [MASK, 0.0, 0.0] and policy.version == 1
    assert not policy.observe(np.array([0.0, 0.0, 0.0]))  # same worst-off groups: μ unchanged


def test_min_regularizer_penalises_groups_ahead_of_the_least_exposed():
    policy = MinRegularizer(TARGETS, strength=2.0)
    policy.observe(np.array([4.0, 1.0, 0.0]))
    # μ_g = λ (B_g − min B) / T = 2 (B − 0) / 20
    assert np.allclose(policy.mu, [0.4, 0.1, 0.0])


def test_policy_state_round_trip():
    policy = KNeighbor(TARGETS, nearest_k=1)
    policy.observe(np.array([3.0, 0.0, 1.0]))
    restored = KNeighbor(TARGETS, nearest_k=1)
    restored.load_state_dict(policy.state_dict())
    assert restored.mu.tolist() == policy.mu.tolist() and restored.requests == 1 and restored.version == 1


def test_factory_and_targets_follow_the_config():
    cfg = RetrievalConfig(k=5, exposure_share=0.5, policy="fairsync", dual_batch_size=7)
    targets = exposure_targets(cfg, n_groups=4, horizon=100)
    assert targets.m.tolist() == [62.5] * 4  # 0.5 × 100 × 5 / 4
    policy = make_policy(cfg, targets)
    assert isinstance(policy, DualVector) and policy.batch == 7
    assert make_policy(cfg, targets, batch=1).batch == 1
    assert isinstance(make_policy(cfg.model_copy(update={"policy": "k_neighbor"}), targets), KNeighbor)


def test_infeasible_targets_are_refused_with_the_numbers():
    with pytest.raises(ValueError, match="exceeds the 10 x 2 = 20 slots"):
        ExposureTargets(np.array([15.0, 15.0]), horizon=10, k=2)


def test_list_metrics_by_hand():
    served = np.array([[3, 1, 2], [5, 6, 7], [9, -1, -1]])
    heldout = np.array([1, 4, 9])
    got = list_metrics(served, heldout)
    assert got["recall"] == got["hr"] == pytest.approx(2 / 3)
    assert got["ndcg"] == pytest.approx((1 / np.log2(3) + 0 + 1.0) / 3)  # ideal DCG is 1: one relevant item


def test_exposure_shortfall_is_the_worst_groups_share():
    assert exposure_shortfall(np.array([5.0, 20.0, 0.0]), np.array([10.0, 10.0, 0.0])) == 0.5


def test_popularity_buckets_are_equal_sized_and_ordered():
    counts = np.array([50, 1, 7, 7, 300, 2])
    groups, names = popularity_groups(counts, 3)
    assert groups.tolist() == [2, 0, 1, 1, 2, 0] and names[0] == "popularity-1of3"
    codes, labels = encode_groups(np.array(["drama", "action", "drama"], dtype=object))
    assert codes.tolist() == [1, 0, 1] and labels == ["action", "drama"]
