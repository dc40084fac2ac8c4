"""Fan a query batch out to every shard, merge the global top-K, report the served lists to the
dual-vector actor. A shard that is down (or restarting) is skipped and the answer is marked
partial instead of failing.

The coordinator keeps the last μ the dual-vector actor returned and sends it with each query, so
serving a batch costs one round of shard calls plus one report — no extra call to fetch μ, and
none to push it to the shards. A shard applies a μ only when its version is newer than its own,
so a coordinator that lags (several Serve replicas) never rolls a shard back. A query batch and
its answer each travel as one bytes object (``cluster/retrieval/wire.py``), and a report as the
slots per group: one short list.

Reports are numbered and kept until the dual-vector actor acknowledges them, which it does once
they are written (``actors/dual_vector.py``); the actor ignores numbers it has applied. The async
path (Serve) answers a batch only after its report is acknowledged, so a list a client received
is counted, and counted once, even if this replica dies or is scaled down right after: a
replica's death can only leave counted lists undelivered (those of its batches between the
acknowledgement and the answer), never delivered lists uncounted.

A batch whose report fails (the dual-vector actor died, and Ray is bringing it back) sends it
again until it is acknowledged, for at most ``timeout_s``. Past that the actor is taken as
unreachable: batches are served without waiting, their reports kept in the bounded outbox, which
is probed once a second rather than resent whole with every batch, and everything waiting is
sent once the actor answers again. ``exposure_counted`` says which mode the coordinator is in
(``/health``): only while it is False can a replica's death lose counts, those of its outbox."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

import numpy as np
import ray
from ray.exceptions import RayActorError, RayTaskError

from cluster.retrieval.fairsync import group_counts
from cluster.retrieval.report_ledger import Outbox
from cluster.retrieval.shard_index import Hits, merge_top_k
from cluster.retrieval.wire import pack_query, unpack_hits

_SHARD_DOWN = (RayActorError, RayTaskError)
PROBE_EVERY_S = 1.0


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
        self.outbox = Outbox()
        # Without task events: each event is a record Ray sends on to its GCS, per call and per
        # state change, which on the serving path is CPU the shards and the replica share.
        self._search = [s.search_packed.options(enable_task_events=False) for s in shards]
        self._observe = dual.observe_counts.options(enable_task_events=False)
        self._in_flight: dict[int, asyncio.Future] = {}
        self.exposure_counted = True  # the last report reached the dual-vector actor
        self._next_probe = 0.0

    def retrieve(self, queries: np.ndarray, k: int, exclude: list[np.ndarray] | None = None) -> Retrieved:
        """One batch of queries served with one μ (blocking; for jobs and benchmarks); returns
        once its report is acknowledged, as the async path does."""
        if self.mu is None:
            mu, self.version = ray.get(self.dual.current.remote())
            self.mu = np.asarray(mu)
        if exclude is None:
            packed = pack_query(queries, k, self.mu, self.version)
            refs = [search.remote(packed) for search in self._search]
        else:
            refs = [s.search.remote(queries, k, self.mu, self.version, exclude) for s in self.shards]
        try:
            # One wait for every shard: the usual case, where all answer, costs one call into Ray.
            replies = ray.get(refs, timeout=self.timeout_s)
        except (*_SHARD_DOWN, ray.exceptions.GetTimeoutError):
            replies = self._each_answer(refs)
        answers = [unpack_hits(reply) if exclude is None else reply for reply in replies]
        result = self._merge(answers, k, partial=len(answers) < len(refs))
        self._add_report(result, len(queries))
        self.flush_sync(timeout_s=self.timeout_s)
        return result

    def _each_answer(self, refs: list) -> list:
        """The answers of the shards that replied within ``timeout_s`` (some failed or are slow)."""
        ready, _ = ray.wait(refs, num_returns=len(refs), timeout=self.timeout_s)
        answers = []
        for ref in ready:
            try:
                answers.append(ray.get(ref))
            except _SHARD_DOWN:
                pass
        return answers

    def _add_report(self, result: Retrieved, n_requests: int) -> int:
        assert self.mu is not None, "μ is fetched before the first fan-out"
        counts = group_counts(result.groups[result.groups >= 0], len(self.mu))
        return self.outbox.add(counts.tolist(), n_requests)

    def flush_sync(self, timeout_s: float) -> bool:
        """Send every unacknowledged report, oldest first, until one fails; True when none is left."""
        for seq, (counts, n_requests) in self.outbox.waiting():
            try:
                mu, version = ray.get(
                    self._observe.remote(counts, n_requests, self.outbox.reporter, seq), timeout=timeout_s
                )
            except (*_SHARD_DOWN, ray.exceptions.GetTimeoutError):
                return False  # the dual-vector actor is restarting: the rest wait for the next call
            self.outbox.ack(seq)
            self._adopt_mu(mu, version)
        return True

    def _adopt_mu(self, mu, version: int) -> None:
        if version > self.version:
            self.mu, self.version = np.asarray(mu, dtype=np.float64), version

    async def retrieve_async(self, queries: np.ndarray, ks: np.ndarray) -> Retrieved:
        """The same for an async caller (the Serve ingress, which batches concurrent requests):
        query q gets ks[q] items; only those count as served."""
        if self.mu is None:
            mu, self.version = await self.dual.current.remote()
            self.mu = np.asarray(mu)
        k = int(np.max(ks))
        packed = pack_query(queries, k, self.mu, self.version)
        refs = [search.remote(packed) for search in self._search]
        done, _ = await asyncio.wait([asyncio.wrap_future(r.future()) for r in refs], timeout=self.timeout_s)
        answers = [unpack_hits(task.result()) for task in done if task.exception() is None]
        result = _truncate(self._merge(answers, k, partial=len(answers) < len(refs)), np.asarray(ks))
        # Answered only once the dual-vector actor has made the report durable (write-ahead): a
        # replica killed after answering has nothing left to report. The new μ comes with it.
        seq = self._add_report(result, len(queries))
        if self.exposure_counted:
            await self._until_counted(seq)
        else:
            self._send_waiting()
        return result

    async def _until_counted(self, seq: int) -> None:
        """Until report ``seq`` is acknowledged, sending it again after each failure; after
        ``timeout_s`` the dual-vector actor is taken as unreachable (the report stays waiting)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.timeout_s
        while seq in self.outbox.unacked:
            self._send_waiting()
            left = deadline - loop.time()
            if left <= 0 or seq not in self._in_flight:
                self.exposure_counted = False
                return
            try:
                await asyncio.wait_for(asyncio.shield(self._in_flight[seq]), timeout=left)
            except asyncio.TimeoutError:
                self.exposure_counted = False
                return
            if seq in self.outbox.unacked:
                await asyncio.sleep(0.05)  # it failed: the actor is being restarted

    def _send_waiting(self) -> None:
        """Submit the unacknowledged reports not already on their way, oldest first; while the
        dual-vector actor cannot be reached, only the oldest, once a second, as a probe."""
        waiting = [(seq, payload) for seq, payload in self.outbox.waiting() if seq not in self._in_flight]
        if not self.exposure_counted:
            if self._in_flight or time.monotonic() < self._next_probe:
                return
            self._next_probe = time.monotonic() + PROBE_EVERY_S
            waiting = waiting[:1]
        for seq, (counts, n_requests) in waiting:
            report = self._observe.remote(counts, n_requests, self.outbox.reporter, seq)
            self._in_flight[seq] = asyncio.ensure_future(self._adopt(seq, report))

    async def _adopt(self, seq: int, report) -> None:
        try:
            mu, version = await report
        except _SHARD_DOWN:
            return  # kept in the outbox: sent again until it lands
        finally:
            self._in_flight.pop(seq, None)
        self.outbox.ack(seq)
        if not self.exposure_counted:
            self.exposure_counted = True
            self._send_waiting()  # the rest of what waited, now that it answers again
        self._adopt_mu(mu, version)

    async def flush(self, timeout_s: float = 60.0) -> bool:
        """Until every report is acknowledged (True) or ``timeout_s`` passes (False)."""
        deadline = asyncio.get_running_loop().time() + timeout_s
        while self.outbox.unacked:
            if asyncio.get_running_loop().time() > deadline:
                return False
            self._send_waiting()
            if self._in_flight:
                await asyncio.wait(list(self._in_flight.values()), timeout=1.0)
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
    hits = Hits(
        np.where(beyond, -1, result.hits.items),
        np.where(beyond, -np.inf, result.hits.scores),
        np.where(beyond, -np.inf, result.hits.adjusted),
    )
    return Retrieved(hits, np.where(beyond, -1, result.groups), result.partial, result.mu_version)
