"""One asynchronous server step of the round loop (``fl.mode: async``, FedBuff on the virtual
clock): devices report in virtual-time order and are replaced at once; every K reports, they
train from the model versions they took and the server applies their staleness-weighted average.
The state it moves is ``AsyncEvents``; the loop (``RoundLoop``) provides the pool, the server,
evaluation and checkpoints, as for a synchronous round."""

from __future__ import annotations

import time

import numpy as np

from cluster.fl.async_events import AsyncEvents, Flight
from cluster.fl.availability import draw_available
from cluster.fl.records import RoundTiming, round_record
from cluster.fl.selection import RoundPlan


def async_step(loop, events: AsyncEvents) -> dict:
    """One asynchronous server step: devices report in virtual-time order, each replaced at
    once by a newly drawn one, until K have reported; they train (from the model version each
    took) in one call per version, and the server applies their staleness-weighted average."""
    server, ops = loop.server, loop.server.ops
    started, last_s = time.perf_counter(), events.now_s
    if not events.flights:
        _start_devices(loop, events, events.concurrency)
    windows = server.fleet.availability
    if not events.flights and windows is not None:  # no device free now: wait for the next window
        events.now_s = windows.next_open(server.sampler.eligible, events.now_s)
        _start_devices(loop, events, events.concurrency)
    reports: list[Flight] = []
    while len(reports) < events.buffer_size and events.flights:
        reports.append(events.next_report())
        _start_devices(loop, events, 1)
    planned = time.perf_counter()
    results, failed = [], []
    for version in sorted({f.version for f in reports}):
        clients = np.array(sorted(f.client for f in reports if f.version == version), np.int64)
        tasks = loop._worker_tasks(clients, lambda _: 0.0)
        outcome = loop.pool.train(version, tasks, events.snapshots[version])
        results += outcome.results
        failed.append(outcome.failed)
    trained = time.perf_counter()
    merged = ops.merge(results)
    version_of = {f.client: f.version for f in reports}
    versions = np.array([version_of[int(c)] for c in merged.clients], np.int64)
    weights, staleness = events.weights(merged.n_samples, versions, server.fleet.tier_of_user[merged.clients])
    server.apply_async(merged, weights, events.now_s)
    events.stepped()
    aggregated = time.perf_counter()
    evaluation = loop._evaluate("test") if loop._evaluates_now() else None
    wall_s = time.perf_counter() - started
    order = np.argsort([f.client for f in reports], kind="stable")
    selected = np.array([reports[i].client for i in order], np.int64)
    flight_s = np.array([reports[i].finish_s - reports[i].start_s for i in order])
    plan = RoundPlan(server.round_index - 1, selected, flight_s, np.ones(len(selected), bool))
    lost = np.concatenate(failed) if failed else np.zeros(0, np.int64)
    record = round_record(
        plan, merged, lost, server.fleet, RoundTiming(events.now_s, wall_s), evaluation, ops.upload_stats(merged)
    )
    record.update(_staleness_fields(server, merged.clients, staleness), sim_round_s=events.now_s - last_s)
    record["in_flight"] = len(events.flights)
    tiers = server.fleet.tier_of_user[merged.clients]
    n_tiers = server.fleet.tiers.n_tiers
    applied = np.bincount(tiers, weights=weights, minlength=n_tiers)
    undiscounted = np.bincount(
        tiers, weights=merged.n_samples / max(float(merged.n_samples.sum()), 1.0), minlength=n_tiers
    )
    for name, weight, plain in zip(server.fleet.tiers.names, applied, undiscounted):
        record[f"applied_weight_{name}"] = float(weight)
        record[f"sample_weight_{name}"] = float(plain)
    return loop._close_round(record, (started, planned, trained, aggregated), wall_s)


def _staleness_fields(server, clients: np.ndarray, staleness: np.ndarray) -> dict:
    """The applied updates' staleness, overall and per tier (NaN for a tier with none)."""
    fleet = server.fleet
    fields = {
        "staleness_mean": float(np.mean(staleness)) if len(staleness) else float("nan"),
        "staleness_max": int(np.max(staleness)) if len(staleness) else 0,
    }
    tiers = fleet.tier_of_user[clients]
    for tier, name in enumerate(fleet.tiers.names):
        mine = staleness[tiers == tier]
        fields[f"staleness_mean_{name}"] = float(np.mean(mine)) if len(mine) else float("nan")
    return fields


def _start_devices(loop, events: AsyncEvents, k: int) -> None:
    """Up to ``k`` newly drawn devices take the current model; a device in flight, one that
    already trained from this version, or one not available now is passed over."""
    server = loop.server
    busy, windows, now = events.busy, server.fleet.availability, events.now_s

    def free(clients: np.ndarray) -> np.ndarray:
        idle = np.array([int(c) not in busy for c in clients], bool)
        return idle & windows.available(clients, now) if windows is not None else idle

    clients = draw_available(server.strategy.select, free, k, limit=len(server.sampler.eligible))
    latency = server.price_clients(clients, events.starts) if len(clients) else np.zeros(0)
    events.start(clients, latency, server.params)
