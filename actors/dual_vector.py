"""Dual-vector actor ``dual-vector``: the exposure policy's per-group offsets μ (FairSync's dual
vector, or a baseline's), the exposure counters and a version. It counts the served lists, steps
μ when the policy says so (FairSync: every B requests) and answers each report with the μ as of
that report; μ reaches the shards with the coordinators' next queries, so a step costs no call
of its own. Its state (``cluster/checkpoint.py``: no pickle) lives in the storage, so a restart
on any node continues instead of resetting.

A report is acknowledged only once it is durable (group commit,
``cluster/retrieval/group_commit.py``). On a local or mounted filesystem each report is a record
appended to a change log before its answer, and the whole state is written every
``SNAPSHOT_EVERY_CHANGES`` reports or ``SNAPSHOT_EVERY_S`` seconds; a restart reads the last
snapshot and replays the log after it. On an object store every commit writes the state, one
write covering every report that arrived during the one before. Reports are numbered by their
coordinator and the applied numbers are persisted with the counts (in the snapshot, and in each
record), so a report sent again after a restart, or after a write that failed, is counted
exactly once and acknowledged only when durable (``cluster/retrieval/report_ledger.py``). A
report the actor had applied but not yet made durable when it died is not acknowledged: its
coordinator sends it again."""

from __future__ import annotations

import copy

import numpy as np

from cluster import checkpoint
from cluster.retrieval.fairsync import exposure_satisfaction, group_counts
from cluster.retrieval.group_commit import ChangeLog, GroupCommit, encode_record
from cluster.retrieval.policies import Policy
from cluster.retrieval.report_ledger import AppliedReports
from cluster.storage import Storage

STATE = "dual-vector"


class DualVectorActor:
    def __init__(self, state: Storage, policy: Policy):
        """``state``: the folder its state file (and, on a filesystem, its change log) lives in."""
        self.state = state
        self.policy = copy.deepcopy(policy)  # Ray hands constructor arrays over read-only
        self.applied = AppliedReports()
        log_from = 0
        if state.exists(f"{STATE}.npz"):
            saved = checkpoint.read_state(state, STATE, STATE)
            if "policy" not in saved:  # written before reports were numbered: the policy alone
                saved = {"policy": saved, "applied": None}
            self.policy.load_state_dict(saved["policy"])
            self.applied = AppliedReports.from_state(saved["applied"])
            log_from = int(saved.get("log_from", 0))
        folder = state.local_path
        log = ChangeLog(folder, STATE) if folder is not None else None
        if log is not None:
            for record in log.records(since=log_from):
                self._apply(record["c"], record["n"], record["r"], record["s"])
            log.drop_before(log_from)
            log.start()
        self.commits = GroupCommit(self._snapshot, self._write, log)

    def ready(self) -> int:
        return self.policy.version

    def current(self) -> tuple[np.ndarray, int]:
        return self.policy.mu, self.policy.version

    async def observe(
        self, served_groups: np.ndarray, n_requests: int, reporter: str = "", seq: int = -1
    ) -> tuple[list[float], int]:
        """Count the groups of the served slots (group ids, any shape); answer with μ once the
        count is durable. A report ``(reporter, seq)`` already applied is not counted again, and
        is answered once the state that counts it is durable too."""
        counts = group_counts(served_groups, len(self.policy.targets.m))
        return await self.observe_counts(counts.tolist(), n_requests, reporter, seq)

    async def observe_counts(
        self, counts: list[float], n_requests: int, reporter: str = "", seq: int = -1
    ) -> tuple[list[float], int]:
        """``observe`` given the slots per group (what a coordinator sends: a short list)."""
        return await self.observe_reports(reporter, [(seq, counts, n_requests)])

    async def observe_reports(
        self, reporter: str, reports: list[tuple[int, list[float], int]]
    ) -> tuple[list[float], int]:
        """Several numbered reports of one coordinator, ``(seq, slots per group, requests)``
        each, oldest first: applied in order, each once (without a ``reporter``, every time), and
        answered with μ once all are durable (one log append or one snapshot for the whole call)."""
        for seq, counts, n_requests in reports:
            if not reporter or self.applied.is_new(reporter, seq):
                self._apply(counts, n_requests, reporter, seq)
                self.commits.changed(encode_record({"r": reporter, "s": seq, "n": n_requests, "c": counts}))
        # As of the last report, not of the write; a list: Ray pickles it for less than an array.
        mu, version = self.policy.mu.tolist(), self.policy.version
        await self.commits.durable()
        return mu, version

    def _apply(self, counts: list[float], n_requests: int, reporter: str, seq: int) -> None:
        if reporter and not self.applied.is_new(reporter, seq):
            return  # replayed from a log that a failed append left twice
        self.policy.observe(np.asarray(counts, dtype=np.float64), int(n_requests))
        if reporter:
            self.applied.mark(reporter, seq)

    def stats(self) -> dict:
        return {
            "exposure": self.policy.exposure.tolist(),
            "m": self.policy.targets.m.tolist(),
            "mu": self.policy.mu.tolist(),
            "mu_version": self.policy.version,
            "requests": self.policy.requests,
            **exposure_satisfaction(self.policy.exposure, self.policy.targets, self.policy.requests),
        }

    def pid(self) -> int:
        import os

        return os.getpid()

    def commit_stats(self) -> dict:
        """Reports counted, snapshots of the state written, and change-log appends (0 on an
        object store): fewer snapshots than reports under load."""
        return {"changes": self.commits.changes, "writes": self.commits.writes, "appends": self.commits.appends}

    def _snapshot(self) -> dict:
        return copy.deepcopy({"policy": self.policy.state_dict(), "applied": self.applied.state_dict()})

    def _write(self, state: dict) -> None:
        checkpoint.write_state(self.state, STATE, STATE, state)
