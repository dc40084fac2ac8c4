"""Selection, over-selection, aggregation, server optimizers and metrics on tiny hand cases."""

import dataclasses

import numpy as np
import pytest

from configs import load_config
from cluster.fl.aggregation import empty_update, fedavg, merge_updates
from cluster.fl.rank_metrics import rank_metrics, summarize
from cluster.fl.families.ncf.ops import NCFOps
from cluster.fl.families.ncf.negatives import RoundKey, hashed_negatives
from cluster.fl.clock import keep_fastest
from cluster.fl.selection import EpochSampler, RoundPlan, n_to_select
from cluster.fl.server_core import FederatedServer, FleetView
from cluster.fl.families.ncf.model import NCFSpec
from cluster.tiers.latency import TierTable
from cluster.fl.types import ClientUpdate


def test_epoch_sampler_never_repeats_within_an_epoch():
    sampler = EpochSampler(np.arange(10), np.random.default_rng(0))
    first = np.concatenate([sampler.draw(3) for _ in range(3)])
    assert len(set(first.tolist())) == 9
    crossing = sampler.draw(3)  # 1 left in epoch 0, 2 from epoch 1
    assert len(set(crossing.tolist())) == 3
    assert set(np.r_[first, crossing[:1]].tolist()) == set(range(10))
    rest_of_epoch = np.concatenate([crossing[1:], sampler.draw(8)])
    assert sorted(rest_of_epoch.tolist()) == list(range(10))
    assert sampler.epoch == 1


def test_epoch_sampler_state_round_trip():
    a = EpochSampler(np.arange(50), np.random.default_rng(3))
    a.draw(7)
    b = EpochSampler(np.arange(50), np.random.default_rng(99))
    b.load_state_dict(a.state_dict())
    assert all(np.array_equal(a.draw(9), b.draw(9)) for _ in range(12))


def test_overselection_and_deadline():
    assert n_to_select(100, 0.2) == 120 and n_to_select(100, 0.0) == 100 and n_to_select(3, 0.5) == 5
    latency = np.array([5.0, 1.0, 3.0, 3.0, 9.0])
    assert keep_fastest(latency, 3, None).tolist() == [False, True, True, True, False]
    assert keep_fastest(latency, 5, 4.0).tolist() == [False, True, True, True, False]
    assert keep_fastest(latency, 2, None).tolist() == [False, True, True, False, False], "ties keep the earlier"
    plan = RoundPlan(0, np.array([10, 11, 12, 13, 14]), latency, keep_fastest(latency, 3, None))
    assert plan.duration_s == 3.0 and plan.dropped_clients.tolist() == [10, 14]


def _server(*overrides, n_clients=600):
    cfg = load_config(None, list(overrides))
    tiers = TierTable.from_config(cfg.tiers)
    tier_of_user = np.arange(n_clients) % 3
    samples = np.full(n_clients, 40)
    spec = NCFSpec("gmf", 4, (8,), 50)
    fleet = FleetView(tiers, tier_of_user.astype(np.int8), samples)
    return FederatedServer(cfg.fl, NCFOps(spec, cfg.fl.negatives_per_positive), fleet, seed=0), tier_of_user


def test_server_plan_overselects_and_drops_the_slowest_tier_most():
    server, tier_of_user = _server("fl.clients_per_round=100", "fl.overselect=0.2")
    plan = server.plan_round()
    assert len(plan.selected) == 120 and plan.kept.sum() == 100
    assert plan.latency_s[plan.kept].max() <= plan.latency_s[~plan.kept].min()
    dropped_tiers = np.bincount(tier_of_user[plan.dropped_clients], minlength=3)
    assert dropped_tiers[0] == 20, f"low-end phones are the stragglers: {dropped_tiers}"


def test_server_deadline_mode():
    # A deadline at the median latency of the same seed's round binds: it keeps some, drops some.
    free_latency = _server("fl.clients_per_round=90")[0].plan_round().latency_s
    deadline = float(np.median(free_latency))
    server, tier_of_user = _server("fl.clients_per_round=90", f"fl.deadline_s={deadline}")
    plan = server.plan_round()
    assert 0 < plan.kept.sum() < len(plan.kept), "the deadline must bind for this test to mean anything"
    assert (plan.latency_s[plan.kept] <= deadline).all() and (plan.latency_s[~plan.kept] > deadline).all()


def _result(clients, n_samples, rows, dense):
    """rows: list of (owner, item, delta vector)."""
    return ClientUpdate(
        clients=np.asarray(clients, np.int64), n_samples=np.asarray(n_samples, np.int64),
        loss=np.zeros(len(clients), np.float32), touched_rows=np.bincount([r[0] for r in rows], minlength=len(clients)),
        item_ids=np.asarray([r[1] for r in rows], np.int64), row_owner=np.asarray([r[0] for r in rows], np.int32),
        item_deltas={"item_gmf": np.asarray([r[2] for r in rows], np.float32)},
        dense_deltas={"out.weight": np.asarray(dense, np.float32)[:, :2], "out.bias": np.asarray(dense, np.float32)[:, 2:]},
    )


def test_fedavg_by_hand_and_independent_of_worker_split():
    spec = NCFSpec("gmf", 2, (4,), 3)
    empty = empty_update(spec.dense_shapes(), {"item_gmf": spec.dim})
    a = _result([5], [1], [(0, 0, [1.0, 0.0]), (0, 2, [2.0, 2.0])], [[1.0, 1.0, 3.0]])
    b = _result([2, 9], [3, 4], [(0, 0, [0.0, 4.0]), (1, 1, [8.0, 0.0])], [[2.0, 0.0, 0.0], [0.0, 8.0, 1.0]])
    delta = fedavg(merge_updates([a, b], empty), spec.n_items)
    # weights 1/8 (client 5), 3/8 (client 2), 4/8 (client 9)
    np.testing.assert_allclose(delta["item_gmf"], [[1 / 8, 12 / 8], [32 / 8, 0], [2 / 8, 2 / 8]])
    np.testing.assert_allclose(delta["out.weight"], [1 / 8 + 6 / 8, 1 / 8 + 32 / 8])
    np.testing.assert_allclose(delta["out.bias"], [3 / 8 + 4 / 8])
    swapped = fedavg(merge_updates([b, a], empty), spec.n_items)
    for name in delta:
        assert np.array_equal(delta[name], swapped[name])
    merged = merge_updates([b, a], empty)
    assert merged.clients.tolist() == [2, 5, 9]


def test_rank_metrics_by_hand():
    scores = np.array([
        [0.9, 0.1, 0.2, 0.3],     # rank 0
        [0.5, 0.6, 0.7, 0.1],     # rank 2
        [0.5, 0.5, 0.1, 0.1],     # tie counts against: rank 1
        [np.nan, 0.1, 0.2, 0.3],  # a diverged model is a miss
    ])
    hit, ndcg = rank_metrics(scores, k=2)
    assert hit.tolist() == [1, 0, 1, 0]
    assert ndcg.tolist() == pytest.approx([1.0, 0.0, 1 / np.log2(3), 0.0])


def test_summarize_per_tier():
    out = summarize({"hr10": np.array([1.0, 0.0, 1.0, 1.0])}, np.array([0, 0, 1, 1]), ("low", "high"))
    assert out["hr10"] == 0.75 and out["hr10_low"] == 0.5 and out["hr10_high"] == 1.0
    assert out["hr10_std"] == pytest.approx(np.std([1, 0, 1, 1]))


def test_hashed_negatives_avoid_positives_and_are_deterministic():
    positives = np.sort(np.array([3 * 20 + i for i in range(15)]))
    negatives = hashed_negatives(RoundKey(1, 2), np.array([3]), np.array([200]), positives, 20)
    assert set(negatives.tolist()) <= set(range(15, 20))
    assert np.array_equal(negatives, hashed_negatives(RoundKey(1, 2), np.array([3]), np.array([200]), positives, 20))
    assert not np.array_equal(negatives, hashed_negatives(RoundKey(1, 3), np.array([3]), np.array([200]), positives, 20))


def test_fedavg_of_narrowed_clients_needs_their_channel_masks():
    spec = NCFSpec("gmf", 2, (4,), 3)
    narrowed = dataclasses.replace(_result([5], [1], [(0, 0, [1.0, 0.0])], [[1.0, 1.0, 3.0]]),
                                   fractions=np.array([0.5], np.float32))
    with pytest.raises(ValueError, match="needs their channel_masks"):
        fedavg(narrowed, spec.n_items)
