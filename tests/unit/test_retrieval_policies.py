"""Baseline exposure policies, the policy factory, list metrics and group assignment."""

import numpy as np
import pytest
from pydantic import ValidationError

from cluster.retrieval.baselines import MASK, KNeighbor, MinRegularizer, TopK
from cluster.retrieval.catalog import encode_groups, popularity_groups
from cluster.retrieval.fairsync import DualVector, ExposureTargets
from cluster.retrieval.list_metrics import exposure_shortfall, list_metrics
from cluster.retrieval.policies import exposure_targets, make_policy
from configs import ConfigError, load_config
from configs.schema import RetrievalConfig
from jobs.fair_retrieval_eval import methods

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
    cfg = RetrievalConfig(k=5, exposure_share=0.5, policy={"kind": "fairsync", "batch_size": 7})
    targets = exposure_targets(cfg, n_groups=4, horizon=100)
    assert targets.m.tolist() == [62.5] * 4  # 0.5 × 100 × 5 / 4
    policy = make_policy(cfg.policy, targets)
    assert isinstance(policy, DualVector) and policy.batch == 7
    assert make_policy(cfg.policy, targets, batch=1).batch == 1
    neighbor = make_policy(RetrievalConfig(policy={"kind": "k_neighbor", "groups": 2}).policy, targets)
    assert isinstance(neighbor, KNeighbor) and neighbor.nearest_k == 2
    regularizer = make_policy(RetrievalConfig(policy={"kind": "min_regularizer", "strength": 3.0}).policy, targets)
    assert isinstance(regularizer, MinRegularizer) and regularizer.strength == 3.0
    assert isinstance(make_policy(RetrievalConfig(policy="topk").policy, targets), TopK)


@pytest.mark.parametrize("section, message", [
    ({"policy": {"kind": "topk", "lr": 0.5}}, "lr"),  # another kind's setting is unknown here
    ({"policy": {"kind": "fairsync", "groups": 2}}, "groups"),
    ({"policy": {"kind": "fairsync", "batch_size": 0}}, "batch_size"),
    ({"policy": "fair"}, "fair"),
    ({"dual_lr": 0.5}, r"retrieval.dual_lr → retrieval.policy.lr \(kind fairsync\)"),
    ({"policy": "k_neighbor", "k_neighbor_groups": 2}, r"retrieval.k_neighbor_groups → retrieval.policy.groups"),
])
def test_bad_policy_settings_are_rejected_naming_the_field(section, message):
    with pytest.raises(ValidationError, match=message):
        RetrievalConfig(**section)


def test_a_run_folders_config_from_before_the_policy_split_still_loads():
    old = {"policy": "min_regularizer", "dual_batch_size": 16, "dual_lr": 0.5, "dual_optimizer": "sgd",
           "dual_variant": "full", "k_neighbor_groups": 2, "min_regularizer_lambda": 3.0}
    assert RetrievalConfig(**old).policy.model_dump() == {"kind": "min_regularizer", "strength": 3.0}
    old["policy"] = "fairsync"
    assert RetrievalConfig(**old).policy.model_dump() == {"kind": "fairsync", "batch_size": 16, "lr": 0.5,
                                                          "optimizer": "sgd", "variant": "full"}


FAIRSYNC_DEFAULTS = {"kind": "fairsync", "batch_size": 32, "lr": 0.01, "optimizer": "adam", "variant": "projected"}


def test_the_evaluation_runs_every_kind_with_the_configured_settings_where_given():
    cfg = load_config(None, ["retrieval.policy=k_neighbor", "retrieval.policy.groups=3"])
    kinds = [(policy.model_dump(), batch) for policy, batch in methods(cfg, [8])]
    assert kinds == [({"kind": "topk"}, 64), ({"kind": "k_neighbor", "groups": 3}, 1),
                     ({"kind": "min_regularizer", "strength": 1.0}, 1),
                     *[(FAIRSYNC_DEFAULTS, batch) for batch in (8, 32)]]  # the sweep's B, and the default one
    with pytest.raises(ConfigError, match=r"retrieval\.policy\.groups: unknown key \(not a setting of kind 'fairsync'\)"):
        load_config(None, ["retrieval.policy.groups=3"])


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
