"""Retrieval shard and dual-vector actors: exact sharded answers, a killed shard answered around
(partial) and back after its restart, the dual vector's state surviving a restart."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
import ray
from ray.exceptions import GetTimeoutError, RayActorError

from actors.retrieval_coordinator import Coordinator
from actors.retrieval_factory import RetrievalActors, save_partitions, start_dual, start_shards
from cluster.retrieval.catalog import Catalog
from cluster.retrieval.fairsync import DualVector, ExposureTargets
from cluster.storage import Storage
from configs.schema import RetrievalConfig
from tests.actor_kill import kill_and_wait_gone

pytestmark = pytest.mark.usefixtures("ray_session")
N_ITEMS, DIM, N_GROUPS, K = 400, 8, 4, 10


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    """The shard actors, shared by the module's tests: they hold no policy (each test brings its
    own dual-vector actor and they forget the last one's μ), and restart from their files."""
    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(N_ITEMS, DIM)).astype(np.float32)
    groups = rng.integers(0, N_GROUPS, N_ITEMS)
    vectors[groups == 3] -= 0.8 * vectors[groups == 3].mean(axis=0)  # keep group 3 unremarkable
    catalog = Catalog(np.arange(N_ITEMS) + 5000, vectors, groups, [f"g{i}" for i in range(N_GROUPS)],
                      np.arange(3), rng.normal(size=(3, DIM)).astype(np.float32))
    cfg = RetrievalConfig(n_shards=3, k=K)
    partitions = Storage(tmp_path_factory.mktemp("shards"))
    save_partitions(cfg, catalog, partitions, rng)
    handles = start_shards(cfg, N_GROUPS, partitions, name_prefix="actors-test-")
    yield handles, catalog, cfg, partitions
    for handle in handles:
        ray.kill(handle, no_restart=True)


@pytest.fixture()
def fleet(shards, tmp_path: Path):
    handles, catalog, _, _ = shards
    ray.get([s.forget_mu.remote() for s in handles])
    targets = ExposureTargets(np.array([0.0, 0.0, 0.0, 4.0 * 200]), horizon=200, k=K)  # group 3: 4 of 10 slots
    dual = start_dual(DualVector(targets, 8, 0.2, "adam"), handles, Storage(tmp_path), name_prefix="actors-test-")
    ray.get([s.ready.remote() for s in handles] + [dual.ready.remote()])
    fleet = RetrievalActors(handles, dual, Coordinator(handles, dual, catalog.item_groups))
    yield fleet, catalog.item_vectors, catalog.item_groups, np.random.default_rng(1)
    ray.kill(dual, no_restart=True)


def test_sharded_answer_is_the_exact_top_k_and_feeds_the_dual(fleet):
    fleet, vectors, groups, rng = fleet
    queries = rng.normal(size=(4, DIM)).astype(np.float32)
    answer = fleet.coordinator.retrieve(queries, K)
    expected = np.argsort(-(queries @ vectors.T), axis=1)[:, :K]
    assert not answer.partial and answer.mu_version == 0
    assert np.array_equal(np.sort(answer.hits.items, axis=1), np.sort(expected, axis=1))
    for _ in range(20):
        fleet.coordinator.retrieve(rng.normal(size=(4, DIM)).astype(np.float32), K)
    stats = ray.get(fleet.dual.stats.remote())
    assert stats["requests"] == 84 and sum(stats["exposure"]) == 84 * K
    assert stats["mu_version"] == 84 // 8 and stats["mu"][3] < 0 == stats["mu"][0]


def test_killed_shard_gives_partial_answers_then_comes_back(fleet):
    fleet, _, _, rng = fleet
    queries = rng.normal(size=(2, DIM)).astype(np.float32)
    # The fan-out must give up on the killed shard before Ray has restarted it (a new worker
    # process that imports FAISS and reloads its partition: seconds) yet wait for the live one
    # (milliseconds): 5 s let a quick restart answer in time and the answer come back whole.
    fleet.coordinator.timeout_s = 0.5
    kill_and_wait_gone(fleet.shards[1])
    answer = fleet.coordinator.retrieve(queries, K)
    assert answer.partial and (answer.hits.items >= 0).all()
    deadline = time.time() + 60
    while time.time() < deadline:
        try:
            ray.get(fleet.shards[1].ready.remote(), timeout=5)
            break
        except Exception:
            time.sleep(0.5)
    fleet.coordinator.timeout_s = 10.0  # a restarted shard's first search may be slow
    assert not fleet.coordinator.retrieve(queries, K).partial


def test_dual_vector_state_survives_a_restart(fleet, tmp_path: Path):
    fleet, _, _, rng = fleet
    for _ in range(16):
        fleet.coordinator.retrieve(rng.normal(size=(1, DIM)).astype(np.float32), K)
    before = ray.get(fleet.dual.stats.remote())
    old_pid = kill_and_wait_gone(fleet.dual)
    after, new_pid = None, old_pid
    deadline = time.time() + 60
    while time.time() < deadline and after is None:
        try:
            new_pid = ray.get(fleet.dual.pid.remote(), timeout=5)
            after = ray.get(fleet.dual.stats.remote(), timeout=5)
        except (RayActorError, GetTimeoutError):  # still restarting
            time.sleep(0.5)
    assert after is not None, "the dual-vector actor did not come back within 60 s"
    assert new_pid != old_pid, "the actor was not restarted: the state below proves nothing"
    assert (tmp_path / "dual-vector.npz").exists()  # its state lives in the storage, not in a pickle
    assert after["mu_version"] == before["mu_version"] == 2
    assert after["requests"] == 16 and after["mu"] == before["mu"]
    # A report applied before the kill and sent again (its answer was lost) is not counted again.
    resent = fleet.dual.observe.remote(np.zeros((1, K), np.int64), 1, fleet.coordinator.outbox.reporter, 15)
    assert ray.get(resent)[1] == 2 and ray.get(fleet.dual.stats.remote())["requests"] == 16


def test_excluded_items_are_never_served_and_the_answer_stays_exact(fleet):
    fleet, vectors, _, rng = fleet
    queries = rng.normal(size=(3, DIM)).astype(np.float32)
    scores = queries @ vectors.T
    exclude = [np.argsort(-row)[:25] for row in scores]  # the 25 best items of each query are "seen"
    answer = fleet.coordinator.retrieve(queries, K, exclude)
    for row, seen in enumerate(exclude):
        masked = scores[row].copy()
        masked[seen] = -np.inf
        assert set(answer.hits.items[row]) == set(np.argsort(-masked)[:K])


def test_with_the_dual_gone_for_good_the_service_serves_says_so_and_its_outbox_stays_bounded(fleet):
    """The first batch waits ``timeout_s`` for its report; after that batches are served at once,
    one probe a second goes to the dual instead of the whole outbox, and a full outbox gives up
    its oldest reports, counting their requests."""
    import asyncio

    from cluster.retrieval.report_ledger import Outbox

    fleet, _, _, rng = fleet
    coordinator = fleet.coordinator
    coordinator.outbox = Outbox(capacity=5)
    coordinator.retrieve(rng.normal(size=(2, DIM)).astype(np.float32), K)  # μ known before the dual goes
    assert not coordinator.outbox.unacked
    coordinator.timeout_s = 1.0
    ray.kill(fleet.dual, no_restart=True)

    calls: list[tuple[float, int]] = []  # (when, reports carried)
    report_call = coordinator._report_call
    coordinator._report_call = lambda waiting: calls.append((time.perf_counter(), len(waiting))) or report_call(
        waiting
    )

    ended: list[float] = []

    async def serve_batches(n: int) -> list[float]:
        took = []
        for _ in range(n):
            started = time.perf_counter()
            await coordinator.retrieve_async(rng.normal(size=(3, DIM)).astype(np.float32), np.full(3, K))
            ended.append(time.perf_counter())
            took.append(ended[-1] - started)
        return took

    took = asyncio.run(serve_batches(12))
    assert not coordinator.exposure_counted
    assert took[0] >= 0.9 and max(took[1:]) < 0.9, took
    # Once the dual is taken as unreachable: one report a call, at most one call a second.
    after_first = [n for when, n in calls if when > ended[0]]
    assert after_first and all(n == 1 for n in after_first), calls
    assert len(after_first) <= sum(took[1:]) + 1, calls
    assert len(coordinator.outbox.unacked) == 5 and coordinator.outbox.dropped_requests == 7 * 3


def test_a_dual_sigkilled_between_two_snapshots_counts_every_report_once(fleet, tmp_path: Path):
    """Group commit under a crash: the dual-vector actor snapshots its state every 8 reports and
    acknowledges each report once it is in the change log. It is SIGKILLed between two
    snapshots with reports still on their way: the restarted actor replays the log after its
    last snapshot, the coordinator sends again every report not acknowledged, and each report is
    counted exactly once."""
    import os
    import signal

    from tests.actor_kill import _running

    fleet, _, _, rng = fleet
    coordinator, dual = fleet.coordinator, fleet.dual
    # Snapshots by count only (every 8 reports), so the last 5 reports live in the log alone.
    ray.get(dual.__ray_call__.remote(lambda actor: vars(actor.commits).update(every_changes=8, every_s=3600.0)))
    for _ in range(29):
        coordinator.retrieve(rng.normal(size=(1, DIM)).astype(np.float32), K)
    assert not coordinator.outbox.unacked
    committed = ray.get(dual.commit_stats.remote())
    assert committed["appends"] == 29 and committed["writes"] == 3, committed  # at 8, 16, 24
    # Five more served and reported, but not waited for: the kill lands while they are on their way.
    for _ in range(5):
        coordinator.outbox.add([float(K), 0.0, 0.0, 0.0], 1)
    for seq, (counts, n_requests) in coordinator.outbox.waiting():
        dual.observe_counts.remote(counts, n_requests, coordinator.outbox.reporter, seq)
    old_pid = ray.get(dual.pid.remote())
    os.kill(old_pid, signal.SIGKILL)
    deadline = time.time() + 30
    while _running(old_pid):
        assert time.time() < deadline, "the dual-vector actor's process outlived SIGKILL"
        time.sleep(0.05)
    deadline = time.time() + 60
    while not coordinator.flush_sync(timeout_s=5):  # sends again whatever was not acknowledged
        assert time.time() < deadline, "the dual-vector actor did not come back"
        time.sleep(0.5)
    assert ray.get(dual.pid.remote()) != old_pid
    stats = ray.get(dual.stats.remote())
    assert stats["requests"] == 29 + 5 and sum(stats["exposure"]) == (29 + 5) * K, stats


def test_the_partitions_searched_in_process_answer_what_the_shard_actors_answer(shards, tmp_path: Path):
    """``search_in: replica`` (the Serve default) and ``shard_actors`` over the same partitions: the
    same lists and scores, batch after batch, excluded items included, and the same μ after the
    reports of both have stepped it."""
    from actors.retrieval_factory import load_local_shards

    handles, catalog, cfg, partitions = shards
    ray.get([s.forget_mu.remote() for s in handles])
    targets = ExposureTargets(np.array([0.0, 0.0, 0.0, 4.0 * 200]), horizon=200, k=K)
    duals = [start_dual(DualVector(targets, 8, 0.2, "adam"), handles, Storage(tmp_path / name), name_prefix=name)
             for name in ("by-actors-", "in-process-")]
    try:
        ray.get([d.ready.remote() for d in duals])
        by_actors = Coordinator(handles, duals[0], catalog.item_groups)
        in_process = Coordinator([], duals[1], catalog.item_groups, local=load_local_shards(cfg, N_GROUPS, partitions))
        assert in_process.partitions == by_actors.partitions == 3
        rng = np.random.default_rng(7)
        for batch in range(12):
            queries = rng.normal(size=(3, DIM)).astype(np.float32)
            exclude = [rng.choice(catalog.item_ids, 20, replace=False) for _ in range(3)] if batch % 4 == 3 else None
            a, b = by_actors.retrieve(queries, K, exclude), in_process.retrieve(queries, K, exclude)
            np.testing.assert_array_equal(a.hits.items, b.hits.items)
            np.testing.assert_array_equal(a.hits.adjusted, b.hits.adjusted)
            assert a.mu_version == b.mu_version
        stats = ray.get([d.stats.remote() for d in duals])
        assert stats[0]["mu_version"] == stats[1]["mu_version"] == 36 // 8
        np.testing.assert_array_equal(stats[0]["mu"], stats[1]["mu"])
    finally:
        for dual in duals:
            ray.kill(dual, no_restart=True)
