import asyncio

import numpy as np
import pytest

from actors.dual_vector import DualVectorActor
from cluster.retrieval.fairsync import DualVector, ExposureTargets
from cluster.retrieval.group_commit import GroupCommit
from cluster.retrieval.report_ledger import AppliedReports, Outbox
from cluster.storage import Storage


def test_applied_reports_count_each_number_once_in_any_order():
    applied = AppliedReports()
    for seq in (0, 1, 3, 4):
        assert applied.is_new("a", seq)
        applied.mark("a", seq)
    assert not applied.is_new("a", 1) and not applied.is_new("a", 3)
    assert applied.is_new("a", 2) and applied.is_new("b", 0), "2 failed and comes later; reporters are apart"
    assert applied.state_dict() == {"upto": {"a": 1}, "above": {"a": [3, 4]}}
    applied.mark("a", 2)
    assert applied.state_dict() == {"upto": {"a": 4}, "above": {}}
    restored = AppliedReports.from_state(applied.state_dict())
    assert not restored.is_new("a", 4) and restored.is_new("a", 5)
    assert AppliedReports.from_state(None).is_new("a", 0)


def test_outbox_keeps_what_was_not_acknowledged():
    outbox, other = Outbox(), Outbox()
    assert outbox.reporter != other.reporter
    first, second, third = outbox.add("g0", 1), outbox.add("g1", 2), outbox.add("g2", 3)
    assert (first, second, third) == (0, 1, 2)
    outbox.ack(second)
    outbox.ack(second)  # an answer that arrives twice is harmless
    assert outbox.waiting() == [(0, ("g0", 1)), (2, ("g2", 3))]


def _observe(actor, *args, **kwargs):
    return asyncio.run(actor.observe(*args, **kwargs))


def _dual_vector_actor(folder):
    """The dual-vector actor's class in this process (no Ray), with its state in ``folder``."""
    targets = ExposureTargets(np.array([0.0, 20.0]), horizon=10, k=5)
    return DualVectorActor(Storage(folder), DualVector(targets, batch=2, lr=0.1, optimizer="adam"))


def test_the_dual_vector_actor_counts_a_report_sent_again_once(tmp_path):
    served = np.array([0, 0, 0, 1, 0])  # the groups of one request's five slots
    actor = _dual_vector_actor(tmp_path)
    first = _observe(actor, served, 1, reporter="coordinator-a", seq=0)
    again = _observe(actor, served, 1, reporter="coordinator-a", seq=0)
    assert np.array_equal(first[0], again[0]) and first[1] == again[1]
    assert actor.stats()["requests"] == 1 and actor.stats()["exposure"] == [4.0, 1.0]
    _observe(actor, served, 1, reporter="coordinator-b", seq=0)  # another coordinator's own numbering
    assert actor.stats()["requests"] == 2

    # After a restart from its file, the reports already applied are still known.
    restarted = _dual_vector_actor(tmp_path)
    _observe(restarted, served, 1, reporter="coordinator-a", seq=0)
    _observe(restarted, served, 1, reporter="coordinator-b", seq=0)
    assert restarted.stats() == actor.stats()
    # And it steps μ on as the actor that never stopped does: Adam's moments came back too.
    for seq in range(1, 7):
        expected = _observe(actor, served, 1, reporter="coordinator-a", seq=seq)
        got = _observe(restarted, served, 1, reporter="coordinator-a", seq=seq)
        assert np.array_equal(got[0], expected[0]) and got[1] == expected[1], seq
    assert restarted.stats()["requests"] == 8 and restarted.stats()["mu_version"] == 4


def test_a_full_outbox_gives_up_its_oldest_reports_and_counts_their_requests():
    outbox = Outbox(capacity=3)
    for n in range(5):
        outbox.add(f"g{n}", n + 1)
    assert [seq for seq, _ in outbox.waiting()] == [2, 3, 4]
    assert outbox.dropped_requests == 1 + 2


class _Store:
    """A state store whose writes can be made to fail or to wait, to see who is told what."""

    def __init__(self):
        self.written, self.fail, self.gate = [], False, None

    def write(self, state):
        if self.gate is not None:
            self.gate.wait(5)
        if self.fail:
            raise OSError("disk full")
        self.written.append(state)


def test_group_commit_answers_only_after_a_write_that_covers_the_change_and_shares_writes():
    import threading

    store, state = _Store(), {"n": 0}
    commits = GroupCommit(lambda: dict(state), store.write)
    store.gate = threading.Event()

    async def change_and_wait():
        state["n"] += 1
        commits.changed()
        await commits.durable()
        return dict(store.written[-1])

    async def main():
        waiters = [asyncio.ensure_future(change_and_wait()) for _ in range(20)]
        await asyncio.sleep(0.05)
        assert not any(w.done() for w in waiters), "told durable before any write finished"
        store.gate.set()
        return await asyncio.gather(*waiters)

    seen = asyncio.run(main())
    assert all(s["n"] >= i + 1 for i, s in enumerate(seen)), "a waiter answered by a write made before its change"
    assert store.written[-1] == {"n": 20} and commits.writes <= 3 < 20, commits.writes
    assert not commits.dirty


def test_a_failed_write_is_reported_to_its_waiters_and_written_again_later():
    store, state = _Store(), {"n": 0}
    commits = GroupCommit(lambda: dict(state), store.write)

    async def change():
        state["n"] += 1
        commits.changed()
        await commits.durable()

    store.fail = True
    with pytest.raises(OSError, match="disk full"):
        asyncio.run(change())
    assert commits.dirty and store.written == []
    store.fail = False
    asyncio.run(commits.durable())
    assert store.written == [{"n": 1}] and not commits.dirty


@pytest.mark.parametrize("mode", ["change log", "snapshots only"])
def test_a_report_sent_again_after_a_failed_write_is_acknowledged_only_once_written(tmp_path, mode):
    """The first try counted it in memory but its write failed, so the coordinator was never
    told and sends it again: the repeat must not be answered until the count is on disk."""
    served = np.array([0, 0, 0, 1, 0])
    actor = _dual_vector_actor(tmp_path)
    if mode == "snapshots only":  # the way of an object store, where nothing can be appended
        actor.commits = GroupCommit(actor._snapshot, actor._write)
    target = actor.commits.log if mode == "change log" else actor.commits
    real_write = target.append if mode == "change log" else target.write

    def disk_full(state):
        raise OSError("disk full")

    setattr(target, "append" if mode == "change log" else "write", disk_full)
    with pytest.raises(OSError):
        _observe(actor, served, 1, reporter="coordinator-a", seq=0)
    with pytest.raises(OSError):
        _observe(actor, served, 1, reporter="coordinator-a", seq=0)  # counted in memory, not yet durable
    setattr(target, "append" if mode == "change log" else "write", real_write)
    _observe(actor, served, 1, reporter="coordinator-a", seq=0)
    restarted = _dual_vector_actor(tmp_path)
    assert restarted.stats()["requests"] == 1 and restarted.stats()["exposure"] == [4.0, 1.0]


class _Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def _log_commits(tmp_path, state, every_changes=3, every_s=10.0, write=None):
    from cluster.retrieval.group_commit import ChangeLog

    log = ChangeLog(tmp_path, "state")
    log.start()
    written = []
    clock = _Clock()
    commits = GroupCommit(lambda: dict(state), write or written.append, log, every_changes, every_s, clock)
    return commits, log, written, clock


def test_with_a_change_log_a_change_is_durable_once_appended_and_snapshots_come_every_n_changes(tmp_path):
    state = {"n": 0}
    commits, log, written, _ = _log_commits(tmp_path, state, every_changes=3)

    async def change():
        state["n"] += 1
        commits.changed(f'{{"n": {state["n"]}}}\n'.encode())
        await commits.durable()
        assert [r["n"] for r in log.records(since=0)][-1] == state["n"], "answered before its record was appended"
        await asyncio.sleep(0.01)  # the snapshot's write runs in a thread

    for _ in range(7):
        asyncio.run(change())
    assert commits.appends == 7 and not commits.dirty
    assert [s["n"] for s in written] == [3, 6], "a snapshot every 3 changes, not one per change"
    # Each snapshot names the generation after it; older generations are gone once it is written.
    assert written[-1]["log_from"] == log.generation and log.generations() == [log.generation]
    assert [r["n"] for r in log.records(since=written[-1]["log_from"])] == [7]


def test_with_a_change_log_a_quiet_state_is_snapshotted_after_every_s(tmp_path):
    state = {"n": 0}
    commits, log, written, clock = _log_commits(tmp_path, state, every_changes=1000, every_s=1.0)

    async def change():
        state["n"] += 1
        commits.changed(b'{"x": 1}\n')
        await commits.durable()
        await asyncio.sleep(0.01)

    asyncio.run(change())
    assert written == []
    clock.now = 1.5
    asyncio.run(change())
    assert [s["n"] for s in written] == [2]


def test_a_failed_append_leaves_no_half_record_and_a_torn_last_line_is_skipped(tmp_path):
    from cluster.retrieval.group_commit import ChangeLog

    log = ChangeLog(tmp_path, "state")
    log.start()
    log.append(b'{"n": 1}\n')
    with open(log.path(log.generation), "ab") as handle:
        handle.write(b'{"n": 2')  # a process killed inside its append
    assert [r["n"] for r in log.records(since=0)] == [1]
    again = ChangeLog(tmp_path, "state")
    assert again.start() == log.generation + 1, "a restart appends after the torn line, in a new generation"
    again.append(b'{"n": 3}\n')
    assert [r["n"] for r in again.records(since=0)] == [1, 3]


def test_the_dual_vector_actor_replays_its_log_after_the_last_snapshot(tmp_path):
    """Reports after the last snapshot live only in the change log: a restart replays them, and
    steps μ on exactly as the actor that never stopped does."""
    served = np.array([0, 0, 0, 1, 0])
    actor = _dual_vector_actor(tmp_path)
    actor.commits.every_changes = 4

    async def report_all():
        for seq in range(10):
            await actor.observe(served, 1, reporter="coordinator-a", seq=seq)
            await asyncio.sleep(0.02)  # one event loop throughout, as in the actor: snapshots finish

    asyncio.run(report_all())
    assert actor.commit_stats()["appends"] == 10 and actor.commit_stats()["writes"] >= 1
    restarted = _dual_vector_actor(tmp_path)
    assert restarted.stats() == actor.stats() and restarted.stats()["requests"] == 10
    _observe(restarted, served, 1, reporter="coordinator-a", seq=9)  # a repeat: not counted again
    assert restarted.stats()["requests"] == 10
    for seq in range(10, 14):
        expected = _observe(actor, served, 1, reporter="coordinator-a", seq=seq)
        got = _observe(restarted, served, 1, reporter="coordinator-a", seq=seq)
        assert np.array_equal(got[0], expected[0]) and got[1] == expected[1], seq
