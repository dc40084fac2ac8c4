"""Device availability: windows within a period (wrap-around included), diurnal windows per tier,
Parquet traces by client or device class with clear errors, the shipped trace and its generator,
and selection — synchronous and asynchronous — drawing only devices available at that time. No Ray."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from cluster.fl.availability import AvailabilityError, _from_intervals, diurnal, from_trace
from cluster.fl.experiment import build
from cluster.fl.inprocess import round_loop
from configs import load_config
from configs.availability_schema import DiurnalAvailability, TraceAvailability
from jobs.availability_trace import main as write_trace

TIERS = ("low", "mid", "high")


def test_a_window_across_the_periods_end_wraps_and_the_next_opening_is_found():
    windows = _from_intervals(2, 100.0, np.array([0, 1]), np.array([90.0, 10.0]), np.array([120.0, 20.0]))
    assert windows.available(np.array([0, 1]), 95.0).tolist() == [True, False]
    assert windows.available(np.array([0, 1]), 205.0).tolist() == [True, False], "the period repeats"
    assert windows.available(np.array([0, 1]), 15.0).tolist() == [True, True]
    assert windows.available(np.array([0, 1]), 50.0).tolist() == [False, False]
    assert windows.next_open(np.array([0, 1]), 50.0) == 90.0
    assert windows.next_open(np.array([1]), 50.0) == 110.0
    np.testing.assert_allclose(windows.share_open(), [0.3, 0.1])


def test_diurnal_windows_last_each_tiers_share_at_a_seeded_phase():
    tier_of_user = np.repeat([0, 1, 2], 400)
    cfg = DiurnalAvailability(period_s=1000.0, available_share={"low": 0.2, "mid": 0.5, "high": 0.9})
    windows = diurnal(cfg, tier_of_user, TIERS, seed=3)
    np.testing.assert_allclose(windows.share_open(), np.repeat([0.2, 0.5, 0.9], 400))
    now = windows.available(np.arange(1200), 123.0)
    assert [now[tier_of_user == t].mean() for t in range(3)] == pytest.approx([0.2, 0.5, 0.9], abs=0.07)
    again = diurnal(cfg, tier_of_user, TIERS, seed=3)
    np.testing.assert_array_equal(again.starts, windows.starts)


def test_a_trace_by_device_class_or_client_and_what_it_refuses():
    tier_of_user = np.array([0, 0, 1, 2])
    by_class = pa.table({"device_class": ["low", "high"], "start_s": [0.0, 50.0], "end_s": [10.0, 100.0]})
    windows = from_trace(TraceAvailability(path="t"), by_class, tier_of_user, TIERS, 0, "t.parquet")
    assert windows.period_s == 100.0
    assert windows.available(np.arange(4), 5.0).tolist() == [True, True, False, False]
    assert windows.available(np.arange(4), 60.0).tolist() == [False, False, False, True]
    by_client = pa.table({"client": [2], "start_s": [0.0], "end_s": [1.0]})
    assert from_trace(TraceAvailability(path="t", period_s=10.0), by_client, tier_of_user, TIERS, 0, "t").available(
        np.arange(4), 0.5).tolist() == [False, False, True, False]
    for table, message in [
        (pa.table({"start_s": [0.0], "end_s": [1.0]}), "needs columns"),
        (pa.table({"device_class": ["tiny"], "start_s": [0.0], "end_s": [1.0]}), "are not tiers"),
        (pa.table({"client": [9], "start_s": [0.0], "end_s": [1.0]}), "client ids must lie"),
        (pa.table({"client": [0], "start_s": [5.0], "end_s": [1.0]}), "start_s < end_s"),
    ]:
        with pytest.raises(AvailabilityError, match=message) as raised:
            from_trace(TraceAvailability(path="t"), table, tier_of_user, TIERS, 0, "where.parquet")
        assert "where.parquet" in str(raised.value)


def test_the_shipped_trace_is_what_its_generator_writes(tmp_path: Path):
    assert write_trace(["--out", str(tmp_path / "trace.parquet")]) == 0
    assert pq.read_table(tmp_path / "trace.parquet").equals(pq.read_table("configs/availability/diurnal_tiers.parquet"))
    assert write_trace(["--out", str(tmp_path / "x.parquet"), "--shares", "low=2"]) == 2


def _cfg(tmp_path: Path, *extra: str):
    return load_config("configs/demo.yaml", [
        "data.synthetic.n_users=240", "data.synthetic.n_items=200", "data.synthetic.target_interactions=6000",
        "model.kind=gmf", "model.embedding_dim=8", "fl.clients_per_round=30", "fl.rounds=4", "fl.overselect=0",
        "fl.deadline_s=null", f"data.cache_dir={tmp_path / 'cache'}", *extra,
    ])


DIURNAL = "fl.availability={kind: diurnal, period_s: 60, available_share: {low: 0.2, mid: 0.5, high: 0.8}}"


def test_a_round_draws_only_devices_available_at_its_start(tmp_path: Path):
    loop = round_loop(build(_cfg(tmp_path, DIURNAL)))
    windows = loop.server.fleet.availability
    for _ in range(4):
        start = loop.server.sim_time_s
        plan = loop.server.plan_round()
        assert windows.available(plan.selected, loop.server.sim_time_s).all()
        assert loop.server.sim_time_s >= start
        loop.server.close_unchanged(plan)


def test_asynchronous_devices_start_only_while_available_and_runs_match_across_worker_counts(tmp_path: Path):
    mode = "fl.mode={kind: async, concurrency: 20, buffer_size: 5}"
    one = round_loop(build(_cfg(tmp_path, DIURNAL, mode)))
    windows = one.server.fleet.availability
    starts = []
    real_start = one.events.start

    def watched(clients, latency_s, params):
        starts.append((np.asarray(clients).copy(), one.events.now_s))
        return real_start(clients, latency_s, params)

    one.events.start = watched
    three = round_loop(build(_cfg(tmp_path, DIURNAL, mode, "fl.runtime.workers_per_tier=3")))
    for _ in range(6):
        assert one.run_round()["sim_time_s"] == three.run_round()["sim_time_s"]
    assert sum(len(c) for c, _ in starts) > 20
    assert all(windows.available(clients, at).all() for clients, at in starts if len(clients))
    for name, value in one.server.params.items():
        assert np.array_equal(three.server.params[name], value), name


def test_a_run_with_the_shipped_trace(tmp_path: Path):
    trace = "fl.availability={kind: trace, path: configs/availability/diurnal_tiers.parquet, phase_jitter_s: 3600}"
    loop = round_loop(build(_cfg(tmp_path, trace)))
    records = [loop.run_round() for _ in range(3)]
    assert all(r["selected"] > 0 for r in records)
