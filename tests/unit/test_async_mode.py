"""Buffered asynchronous aggregation (FedBuff) on the virtual clock, in process: the event order and
staleness weights against hand-worked cases, one asynchronous step equal to one synchronous round
bit for bit where they must agree, the same results with any number of workers, a resume from a
checkpoint taken with devices in flight, a lost worker's devices failed and replaced, and what the
mode refuses. No Ray."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from cluster.fl.async_events import AsyncEvents, staleness_weight
from cluster.fl.experiment import build
from cluster.fl.inprocess import round_loop
from configs import ConfigError, load_config
from tests.unit.resume_fixtures import straight_and_resumed
from tests.unit.test_round_loop import OneWorkerLost

PARAMS = {"w": np.zeros(2, np.float32)}


def test_reports_come_in_virtual_time_order_ties_by_client_and_the_clock_follows():
    events = AsyncEvents(concurrency=4, buffer_size=2, staleness_exponent=0.5)
    events.start(np.array([7, 3, 5, 9]), np.array([3.0, 1.0, 3.0, 0.5]), PARAMS)
    order = [events.next_report() for _ in range(4)]
    assert [f.client for f in order] == [9, 3, 5, 7], "at 3.0 s client 5 reports before client 7"
    assert events.now_s == 3.0
    assert events.busy == {3, 5, 7, 9}, "each already trained from version 0"
    events.stepped()
    assert events.busy == set() and events.snapshots == {}, "no device in flight needs version 0"


def test_staleness_discounts_each_update_by_its_age_in_server_steps():
    np.testing.assert_allclose(staleness_weight([0, 1, 3], 0.5), [1.0, 2 ** -0.5, 0.5])
    assert staleness_weight([4], 0.0)[0] == 1.0
    events = AsyncEvents(4, 2, 0.5)
    events.version = 2
    weights, staleness = events.weights(np.array([1, 3]), np.array([0, 1]))
    np.testing.assert_array_equal(staleness, [2, 1])
    np.testing.assert_allclose(weights, [0.25 / np.sqrt(3), 0.75 / np.sqrt(2)])


def test_a_device_in_flight_keeps_the_model_version_it_took():
    events = AsyncEvents(2, 1, 0.5)
    events.start(np.array([1]), np.array([5.0]), {"w": np.ones(2, np.float32)})
    events.stepped()
    events.start(np.array([2]), np.array([1.0]), {"w": np.full(2, 2.0, np.float32)})
    assert set(events.snapshots) == {0, 1}
    np.testing.assert_array_equal(events.snapshots[0]["w"], [1.0, 1.0])
    state = events.state_dict()
    again = AsyncEvents(2, 1, 0.5)
    again.load_state_dict(state)
    assert [again.next_report().client for _ in range(2)] == [2, 1]
    np.testing.assert_array_equal(again.snapshots[1]["w"], [2.0, 2.0])


# Every device takes about the same time (next to no compute, equal bytes, no spread): with C = K = n every
# device of the first draw reports before any replacement can.
EVEN = ["tiers.profiles=[{name: low, share: 0.3, compute_s_per_sample: {mean: 1.0e-9, std: 0.0}, "
        "download_mbps: {mean: 10, std: 0}, upload_mbps: {mean: 10, std: 0}}, "
        "{name: high, share: 0.7, compute_s_per_sample: {mean: 1.0e-9, std: 0.0}, "
        "download_mbps: {mean: 10, std: 0}, upload_mbps: {mean: 10, std: 0}}]", "fl.upload=dense"]


def _cfg(tmp_path: Path, *extra: str):
    return load_config("configs/demo.yaml", [
        "data.synthetic.n_users=240", "data.synthetic.n_items=200", "data.synthetic.target_interactions=6000",
        "model.kind=gmf", "model.embedding_dim=8", "fl.clients_per_round=40", "fl.rounds=4", "fl.overselect=0",
        "fl.deadline_s=null", f"data.cache_dir={tmp_path / 'cache'}", *extra,
    ])


def test_one_async_step_with_c_equal_k_equal_n_is_one_sync_round_bit_for_bit(tmp_path: Path):
    sync = round_loop(build(_cfg(tmp_path, *EVEN, "fl.server_optimizer=adam", "fl.server_lr=0.05")))
    unbuffered = round_loop(build(_cfg(tmp_path, *EVEN, "fl.server_optimizer=adam", "fl.server_lr=0.05",
                                       "fl.mode={kind: async, concurrency: 40, buffer_size: 40}")))
    a, b = sync.run_round(), unbuffered.run_round()
    assert b["staleness_max"] == 0 and b["aggregated"] == a["aggregated"] == 40
    for name, value in sync.server.params.items():
        assert np.array_equal(unbuffered.server.params[name], value), name


def test_the_same_results_with_one_or_three_workers_per_tier(tmp_path: Path):
    mode = "fl.mode={kind: async, concurrency: 30, buffer_size: 8}"
    one = round_loop(build(_cfg(tmp_path, mode)))
    three = round_loop(build(_cfg(tmp_path, mode, "fl.runtime.workers_per_tier=3")))
    for _ in range(4):
        assert one.run_round()["staleness_mean"] == three.run_round()["staleness_mean"]
    for name, value in one.server.params.items():
        assert np.array_equal(three.server.params[name], value), name


@pytest.mark.parametrize("extra", [
    ("fl.mode={kind: async, concurrency: 30, buffer_size: 8}",),
    ("fl.mode={kind: async, concurrency: 30, buffer_size: 8}", "fl.strategy=ditto", "fl.optimization=prune-1:4:16"),
], ids=["gmf", "gmf-ditto-prune"])
def test_a_resume_with_devices_in_flight_equals_an_unbroken_run(tmp_path: Path, extra):
    exp = build(_cfg(tmp_path, *extra, "fl.rounds=5"))
    straight, resumed = straight_and_resumed(exp, tmp_path / "ckpt", rounds=5, break_after=3)
    assert resumed.events.version == straight.events.version == 5
    for name, value in straight.server.params.items():
        assert np.array_equal(resumed.server.params[name], value), name
    assert [r["sim_time_s"] for r in resumed.history] == [r["sim_time_s"] for r in straight.history]


def test_a_lost_workers_devices_count_as_failed_and_are_replaced(tmp_path: Path):
    loop = round_loop(build(_cfg(tmp_path, "fl.mode={kind: async, concurrency: 30, buffer_size: 10}")))
    loop.pool = OneWorkerLost(loop.pool.cores, lost=0)
    records = [loop.run_round() for _ in range(3)]
    assert sum(r["failed_low"] for r in records) > 0 and all(r["aggregated_low"] == 0 for r in records)
    assert all(r["in_flight"] == 30 for r in records), "every reporting device, failed or not, is replaced"


@pytest.mark.parametrize("extra, reason", [
    (("fl.strategy=cali3f",), "does not combine with fl.strategy 'cali3f'"),
    (("fl.strategy=scaffold",), "does not combine with fl.strategy 'scaffold'"),
    (("fl.overselect=0.3",), "does not combine with fl.overselect"),
    (("fl.deadline_s=10",), "does not combine with fl.deadline_s"),
    (("fl.privacy={kind: central_dp, noise_multiplier: 1}",), "does not combine with fl.privacy"),
])
def test_what_has_no_meaning_without_rounds_is_refused_with_the_reason(tmp_path: Path, extra, reason):
    with pytest.raises(ConfigError, match=reason):
        _cfg(tmp_path, "fl.mode=async", *extra)


@pytest.mark.parametrize("model", ["neumf", "dlrm", "din"])
def test_every_family_runs_asynchronously(tmp_path: Path, model):
    click = ["fl.client_lr=1.0", "model.top_hidden=[16]", "model.history_len=10"]
    loop = round_loop(build(_cfg(tmp_path, f"model.kind={model}", "model.mlp_layers=[8,4]",
                                 "fl.mode={kind: async, concurrency: 20, buffer_size: 5}",
                                 "fl.optimization=channel-1:2:4", *(click if model in ("dlrm", "din") else []))))
    records = [loop.run_round() for _ in range(3)]
    assert records[-1]["staleness_max"] >= 1 and all(r["aggregated"] == 5 for r in records)
    assert all(np.isfinite(v).all() for v in loop.server.params.values())


def test_a_stale_device_trains_from_the_model_it_took_not_the_current_one(tmp_path: Path):
    loop = round_loop(build(_cfg(tmp_path, "fl.mode={kind: async, concurrency: 30, buffer_size: 6}")))
    models = [{n: v.copy() for n, v in loop.server.params.items()}]  # the model after each step
    trained_from = []
    real_train = loop.pool.train

    def recording_train(version, tasks, params, fold=None):
        trained_from.append((version, len(models) - 1, {n: v.copy() for n, v in params.items()}))
        return real_train(version, tasks, params)

    loop.pool.train = recording_train
    for _ in range(5):
        loop.run_round()
        models.append({n: v.copy() for n, v in loop.server.params.items()})
    assert any(version < step for version, step, _ in trained_from), "some devices were stale"
    for version, _, params in trained_from:
        for name, value in params.items():
            assert np.array_equal(value, models[version][name]), (version, name)


def test_tier_staleness_weighs_each_tier_by_its_updates_not_by_how_stale_its_devices_are():
    events = AsyncEvents(4, 2, 1.0, tier_staleness=True, n_tiers=2)
    events.version = 9
    # tier 0 is slow (staleness 8, discount 1/9), tier 1 fast (staleness 0, discount 1)
    weights, _ = events.weights(np.array([1, 1, 1, 1]), np.array([1, 1, 9, 9]), np.array([0, 0, 1, 1]))
    plain_total = 0.5 / 9 + 0.5  # the step is no larger than plain FedBuff's
    np.testing.assert_allclose(weights, np.full(4, plain_total / 4))
    # within a tier a staler update still weighs less
    weights, _ = events.weights(np.array([1, 1]), np.array([0, 1]), np.array([0, 0]))
    assert weights[0] < weights[1]
    plain = AsyncEvents(4, 2, 1.0)
    plain.version = 9
    weights, _ = plain.weights(np.array([1, 1, 1, 1]), np.array([1, 1, 9, 9]), np.array([0, 0, 1, 1]))
    np.testing.assert_allclose(weights, [0.25 / 9, 0.25 / 9, 0.25, 0.25])
