"""Fan a query batch out to every shard, merge the global top-K, report the served lists to the
dual-vector actor. A shard that is down (or restarting) is skipped and the answer is marked
partial instead of failing.

The coordinator keeps the last μ the dual-vector actor returned and sends it with each query, so
serving a batch costs one round of shard calls plus one report — no extra call to fetch μ. A
shard applies a μ only when its version is newer than its own, so a coordinator that lags
(several Serve replicas) never rolls a shard back.

Reports are numbered and kept until the dual-vector actor acknowledges them; one that fails
because the actor is restarting is sent again with a later batch (or by ``flush``), and the actor
ignores numbers it has applied: every served list is counted exactly once."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import numpy as np
import ray
from ray.exceptions import RayActorError, RayTaskError

from cluster.retrieval.report_ledger import Outbox
from cluster.retrieval.shard_index import Hits, merge_top_k

_SHARD_DOWN = (RayActorError, RayTaskError)


@dataclass(frozen=True)
class Retrieved:
    """hits (N, K) in global item rows; groups (N, K) of those items; partial: a shard did not
    answer; mu_version: the newest μ the answering shards used."""

    hits: Hits
    groups: np.ndarray
    partial: bool
    mu_version: int


class Coordinator:
    def __init__(self, shards: list, dual, item_groups: np.ndarray, timeout_s: float = 10.0):
        self.shards = shards
        self.dual = dual
        self.item_groups = np.asarray(item_groups)
        self.timeout_s = timeout_s
        self.mu: np.ndarray | None = None
        self.version = -1
        self._pending_reports: set = set()
        self.outbox = Outbox()
        self._in_flight: set[int] = set()

    def retrieve(self, queries: np.ndarray, k: int, exclude: list[np.ndarray] | None = None) -> Retrieved:
        """One batch of queries served with one μ (blocking; for jobs and benchmarks)."""
        if self.mu is None:
            self.mu, self.version = ray.get(self.dual.current.remote())
        refs = [s.search.remote(queries, k, self.mu, self.version, exclude) for s in self.shards]
        ready, not_ready = ray.wait(refs, num_returns=len(refs), timeout=self.timeout_s)
        answers = []
        for ref in ready:
            try:
                answers.append(ray.get(ref))
            except _SHARD_DOWN:
                pass
        result = self._merge(answers, k, partial=len(answers) < len(refs))
        self.outbox.add(result.groups[result.groups >= 0], len(queries))
        self.flush_sync(timeout_s=self.timeout_s)
        return result

    def flush_sync(self, timeout_s: float) -> bool:
        """Send every unacknowledged report, oldest first, until one fails; True when none is left."""
        for seq, (groups, n_requests) in self.outbox.waiting():
            try:
                mu, version = ray.get(self.dual.observe.remote(groups, n_requests, self.outbox.reporter, seq),
                                      timeout=timeout_s)
            except (*_SHARD_DOWN, ray.exceptions.GetTimeoutError):
                return False  # the dual-vector actor is restarting: the rest wait for the next call
            self.outbox.ack(seq)
            if version > self.version:
                self.mu, self.version = mu, version
        return True

    async def retrieve_async(self, queries: np.ndarray, ks: np.ndarray) -> Retrieved:
        """The same for an async caller (the Serve ingress, which batches concurrent requests):
        query q gets ks[q] items; only those count as served."""
        if self.mu is None:
            self.mu, self.version = await self.dual.current.remote()
        k = int(np.max(ks))
        refs = [s.search.remote(queries, k, self.mu, self.version) for s in self.shards]
        done, _ = await asyncio.wait([asyncio.wrap_future(r.future()) for r in refs], timeout=self.timeout_s)
        answers = [task.result() for task in done if task.exception() is None]
        result = _truncate(self._merge(answers, k, partial=len(answers) < len(refs)), np.asarray(ks))
        # The report is submitted now (so anything asked of the dual-vector actor later sees it:
        # one caller's calls run in order) but not awaited: the lists are served without waiting
        # for the dual step and its persisted state; the new μ is adopted when it arrives.
        self.outbox.add(result.groups[result.groups >= 0], len(queries))
        self._send_waiting()
        return result

    def _send_waiting(self) -> None:
        """Submit every unacknowledged report not already on its way (oldest first)."""
        for seq, (groups, n_requests) in self.outbox.waiting():
            if seq in self._in_flight:
                continue
            self._in_flight.add(seq)
            report = self.dual.observe.remote(groups, n_requests, self.outbox.reporter, seq)
            pending = asyncio.ensure_future(self._adopt(seq, report))
            self._pending_reports.add(pending)
            pending.add_done_callback(self._pending_reports.discard)

    async def _adopt(self, seq: int, report) -> None:
        try:
            mu, version = await report
        except _SHARD_DOWN:
            return  # kept in the outbox: sent again with a later batch, once the actor is back
        finally:
            self._in_flight.discard(seq)
        self.outbox.ack(seq)
        if version > self.version:
            self.mu, self.version = mu, version

    async def flush(self, timeout_s: float = 60.0) -> bool:
        """Until every report is acknowledged (True) or ``timeout_s`` passes (False)."""
        deadline = asyncio.get_running_loop().time() + timeout_s
        while self.outbox.unacked:
            if asyncio.get_running_loop().time() > deadline:
                return False
            self._send_waiting()
            if self._pending_reports:
                await asyncio.wait(list(self._pending_reports), timeout=1.0)
            else:
                await asyncio.sleep(0.1)
        return True

    def _merge(self, answers: list[tuple[Hits, int]], k: int, partial: bool) -> Retrieved:
        if not answers:
            raise RuntimeError("no retrieval shard answered")
        merged = merge_top_k([hits for hits, _ in answers], k)
        groups = np.where(merged.items >= 0, self.item_groups[np.maximum(merged.items, 0)], -1)
        return Retrieved(merged, groups, partial, max(version for _, version in answers))



def _truncate(result: Retrieved, ks: np.ndarray) -> Retrieved:
    """Blank out (−1) every slot past row q's own k."""
    beyond = np.arange(result.hits.items.shape[1])[None, :] >= ks[:, None]
    hits = Hits(np.where(beyond, -1, result.hits.items), np.where(beyond, -np.inf, result.hits.scores),
                np.where(beyond, -np.inf, result.hits.adjusted))
    return Retrieved(hits, np.where(beyond, -1, result.groups), result.partial, result.mu_version)
