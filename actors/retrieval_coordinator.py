"""Search a query batch over every partition, merge the global top-K, report the served lists to
the dual-vector actor.

The partitions are searched in this process (``cluster/retrieval/local_shards.py``: one thread
beside the event loop, no Ray call) or, for a catalogue larger than one process should hold, by
one shard actor each. A shard actor that is down (or restarting) is skipped and the answer is
marked partial instead of failing.

The coordinator keeps the last μ the dual-vector actor returned and searches with it, so serving
a batch costs no call to fetch μ, and none to push it to the shards. A shard applies a μ only
when its version is newer than its own, so a coordinator that lags (several Serve replicas)
never rolls a shard back. A query batch and its answer each travel to a shard actor as one bytes
object (``cluster/retrieval/wire.py``), and a report as the slots per group: one short list.

Reports are numbered and kept until the dual-vector actor acknowledges them, which it does once
they are written (``actors/dual_vector.py``); the actor ignores numbers it has applied. One
report call is on its way at a time, carrying every report that waits: under load the reports of
several batches share one call, so the dual's cost per batch falls as the load rises. The async
path (Serve) answers a batch only after its report is acknowledged (``counted``), so a list a
client received is counted, and counted once, even if this replica dies or is scaled down right
after: a replica's death can only leave counted lists undelivered (those of its batches between
the acknowledgement and the answer), never delivered lists uncounted. The search of the next
batch does not wait for that acknowledgement (``search_async`` and ``counted`` are apart).

A batch whose report fails (the dual-vector actor died, and Ray is bringing it back) sends it
again until it is acknowledged, for at most ``timeout_s``. Past that the actor is taken as
unreachable: batches are served without waiting, their reports kept in the bounded outbox, which
is probed once a second rather than resent whole with every batch, and everything waiting is
sent once the actor answers again. ``exposure_counted`` says which mode the coordinator is in
(``/health``): only while it is False can a replica's death lose counts, those of its outbox."""

from __future__ import annotations

import asyncio
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np
import ray
from ray.exceptions import RayActorError, RayTaskError

from cluster.retrieval.fairsync import group_counts
from cluster.retrieval.local_shards import LocalShards
from cluster.retrieval.report_journal import ReportJournal, adopt_orphans
from cluster.retrieval.report_ledger import Outbox
from cluster.retrieval.shard_index import Hits, merge_top_k
from cluster.retrieval.wire import pack_query, unpack_hits

_SHARD_DOWN = (RayActorError, RayTaskError)
PROBE_EVERY_S = 1.0
# Reports one call carries at most: after an outage the outbox (up to 10,000) goes in a few calls.
REPORTS_PER_CALL = 1000
# With a journal, answers do not wait for the dual-vector actor: its reports go at most this often,
# each call carrying every report since the last (μ reaches the coordinator that much later).
REPORT_EVERY_S = 0.02
# With a journal: how often the folder is searched for journals of coordinators that died.
ORPHAN_SCAN_S = 5.0


@dataclass(frozen=True)
class Retrieved:
    """hits (N, K) in global item rows; groups (N, K) of those items; partial: a shard did not
    answer; mu_version: the newest μ the answering shards used."""

    hits: Hits
    groups: np.ndarray
    partial: bool
    mu_version: int


class Coordinator:
    def __init__(
        self,
        shards: list,
        dual,
        item_groups: np.ndarray,
        timeout_s: float = 10.0,
        local: Optional[LocalShards] = None,
    ):
        """``shards``: shard actors, or none when ``local`` holds the partitions in this process."""
        if bool(shards) == (local is not None):
            raise ValueError("give the coordinator shard actors or local partitions, one of the two")
        self.shards = shards
        self.local = local
        self.dual = dual
        self.item_groups = np.asarray(item_groups)
        self.timeout_s = timeout_s
        self.mu: np.ndarray | None = None
        self.version = -1
        self.outbox = Outbox()
        # Without task events: each event is a record Ray sends on to its GCS, per call and per
        # state change, which on the serving path is CPU the shards and the replica share.
        self._search = [s.search_packed.options(enable_task_events=False) for s in shards]
        self._observe = dual.observe_reports.options(enable_task_events=False)
        # The local search runs beside the event loop (FAISS releases the GIL), so requests keep
        # being parsed and reports sent while a batch is searched.
        self._searcher = ThreadPoolExecutor(1, thread_name_prefix="local-search") if local is not None else None
        self._searching = 0  # batches in (or queued for) the search thread
        self._call: Optional[asyncio.Future] = None  # the report call on its way, if one is
        self.exposure_counted = True  # the last report reached the dual-vector actor
        self._next_probe = 0.0
        self.journal: Optional[ReportJournal] = None
        self._last_call = 0.0
        self._send_later: Optional[asyncio.TimerHandle] = None
        self._next_orphan_scan = 0.0

    def keep_journal(self, folder: Path) -> None:
        """Make each served batch's report durable in a journal in ``folder`` before it is
        answered (``cluster/retrieval/report_journal.py``) instead of waiting for the
        dual-vector actor's acknowledgement; adopt the journals dead coordinators left there."""
        self.journal = ReportJournal(folder, self.outbox.reporter)
        self.outbox.on_drop = self.journal.dropped

    @property
    def partitions(self) -> int:
        return len(self.local) if self.local is not None else len(self.shards)

    def retrieve(self, queries: np.ndarray, k: int, exclude: list[np.ndarray] | None = None) -> Retrieved:
        """One batch of queries served with one μ (blocking; for jobs and benchmarks); returns
        once its report is acknowledged, as the async path does."""
        if self.mu is None:
            mu, self.version = ray.get(self.dual.current.remote())
            self.mu = np.asarray(mu)
        if self.local is not None:
            answers = self.local.search(queries, k, self.mu, self.version, exclude)
            expected = len(answers)
        else:
            answers, expected = self._shard_answers(queries, k, exclude), len(self.shards)
        result = self._merge(answers, k, partial=len(answers) < expected)
        self._add_report(result, len(queries))
        self.flush_sync(timeout_s=self.timeout_s)
        return result

    def _shard_answers(self, queries: np.ndarray, k: int, exclude: list[np.ndarray] | None) -> list:
        assert self.mu is not None, "μ is fetched before the first fan-out"
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
        return [unpack_hits(reply) if exclude is None else reply for reply in replies]

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

    def _report_call(self, waiting: list[tuple[int, tuple]]):
        reports = [(seq, counts, n_requests) for seq, (counts, n_requests) in waiting]
        return self._observe.remote(self.outbox.reporter, reports)

    def flush_sync(self, timeout_s: float) -> bool:
        """Send every unacknowledged report, oldest first, until a call fails; True when none is left."""
        while self.outbox.unacked:
            waiting = self.outbox.waiting()[:REPORTS_PER_CALL]
            try:
                mu, version = ray.get(self._report_call(waiting), timeout=timeout_s)
            except (*_SHARD_DOWN, ray.exceptions.GetTimeoutError):
                return False  # the dual-vector actor is restarting: the rest wait for the next call
            for seq, _ in waiting:
                self.outbox.ack(seq)
            self._adopt_mu(mu, version)
        return True

    def _adopt_mu(self, mu, version: int) -> None:
        if version > self.version:
            self.mu, self.version = np.asarray(mu, dtype=np.float64), version

    async def retrieve_async(self, queries: np.ndarray, ks: np.ndarray) -> Retrieved:
        """``search_async``, then ``counted``: answered once its report is acknowledged."""
        result, seq = await self.search_async(queries, ks)
        await self.counted(seq)
        return result

    async def search_async(self, queries: np.ndarray, ks: np.ndarray, on_loop: bool = False) -> tuple[Retrieved, int]:
        """One batch searched with one μ, for an async caller (the Serve ingress, which batches
        concurrent requests): query q gets ks[q] items, and only those count as served. Returns
        the answer and the number of its report, which is on its way but not yet acknowledged:
        the caller answers only after ``counted`` of it (write-ahead). ``on_loop``: no other
        request waits, search in-process partitions on the event loop."""
        if self.mu is None:
            mu, self.version = await self.dual.current.remote()
            self.mu = np.asarray(mu)
        ks = np.asarray(ks)
        k = int(np.max(ks))
        if self.local is not None:
            answers = await self._local_answers(queries, k, on_loop)
            expected = len(answers)  # in process: every partition answers
        else:
            packed = pack_query(queries, k, self.mu, self.version)
            refs = [search.remote(packed) for search in self._search]
            done, _ = await asyncio.wait([asyncio.wrap_future(r.future()) for r in refs], timeout=self.timeout_s)
            answers = [unpack_hits(task.result()) for task in done if task.exception() is None]
            expected = len(refs)
        result = self._merge(answers, k, partial=len(answers) < expected)
        if (ks < k).any():
            result = _truncate(result, ks)
        seq = self._add_report(result, len(queries))
        if self.journal is not None:
            self.journal.append(seq, *self.outbox.unacked[seq])
            self._scan_for_orphans()
        self._send_waiting()
        return result, seq

    async def _local_answers(self, queries: np.ndarray, k: int, on_loop: bool) -> list:
        """``on_loop``: searched on the event loop, for a caller with nothing else to do
        meanwhile (handing a lone query to the search thread and back costs more than it
        overlaps). Otherwise in the search thread, so the loop goes on taking requests, which
        then form the next batch. Never two searches at once (μ is written into the indexes)."""
        assert self.local is not None and self.mu is not None
        if on_loop and not self._searching:
            return self.local.search(queries, k, self.mu, self.version)
        self._searching += 1
        try:
            loop = asyncio.get_running_loop()
            return await loop.run_in_executor(self._searcher, self.local.search, queries, k, self.mu, self.version)
        finally:
            self._searching -= 1

    async def counted(self, seq: int) -> None:
        """Until report ``seq`` is durable: at once with a journal (it is in it); otherwise
        until the dual-vector actor acknowledges it (the new μ comes with it), or at once while
        the actor is taken as unreachable."""
        if self.journal is not None:
            return
        if self.exposure_counted:
            await self._until_counted(seq)
        else:
            self._send_waiting()

    async def _until_counted(self, seq: int) -> None:
        """Until report ``seq`` is acknowledged, sending it again after each failure; after
        ``timeout_s`` the dual-vector actor is taken as unreachable (the report stays waiting)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.timeout_s
        while seq in self.outbox.unacked:
            self._send_waiting()
            left, call = deadline - loop.time(), self._call
            if left <= 0 or call is None:
                self.exposure_counted = False
                return
            try:
                landed = await asyncio.wait_for(asyncio.shield(call), timeout=left)
            except asyncio.TimeoutError:
                self.exposure_counted = False
                return
            if not landed:
                await asyncio.sleep(0.05)  # it failed: the actor is being restarted

    def _send_waiting(self) -> None:
        """One call with the unacknowledged reports, oldest first, unless one is on its way
        (what waits then goes when it returns), or, with a journal, the last went less than
        ``REPORT_EVERY_S`` ago (it then goes when that has passed); while the dual-vector actor
        cannot be reached, only the oldest, once a second, as a probe."""
        if self._call is not None or not self.outbox.unacked:
            return
        now = time.monotonic()
        if self.journal is not None and now < self._last_call + REPORT_EVERY_S:
            self._send_after(self._last_call + REPORT_EVERY_S - now)
            return
        waiting = self.outbox.waiting()[:REPORTS_PER_CALL]
        if not self.exposure_counted:
            if now < self._next_probe:
                self._send_after(self._next_probe - now)
                return
            self._next_probe = now + PROBE_EVERY_S
            waiting = waiting[:1]
        self._last_call = now
        self._call = asyncio.ensure_future(self._adopt([seq for seq, _ in waiting], self._report_call(waiting)))

    def _send_after(self, delay_s: float) -> None:
        """``_send_waiting`` again after ``delay_s`` (once, however many ask): reports left
        waiting go even if no request comes to send them."""
        if self.journal is None or self._send_later is not None:
            return

        def send() -> None:
            self._send_later = None
            self._send_waiting()

        self._send_later = asyncio.get_running_loop().call_later(delay_s, send)

    async def _adopt(self, seqs: list[int], call) -> bool:
        """True once the call's reports are acknowledged; False when it failed (they stay waiting)."""
        try:
            mu, version = await call
        except _SHARD_DOWN:
            if self.journal is not None:
                self.exposure_counted = False  # nothing waits for it: probe until it answers again
                self._send_after(PROBE_EVERY_S)
            return False
        finally:
            self._call = None
        for seq in seqs:
            self.outbox.ack(seq)
        if self.journal is not None:
            self.journal.acknowledged_below(self.outbox.oldest())
        self.exposure_counted = True
        self._adopt_mu(mu, version)
        self._send_waiting()  # what came in while this call was on its way
        return True

    def _scan_for_orphans(self) -> None:
        if time.monotonic() >= self._next_orphan_scan:
            self._next_orphan_scan = time.monotonic() + ORPHAN_SCAN_S
            asyncio.ensure_future(self.adopt_orphans())

    async def adopt_orphans(self) -> int:
        """Send the reports of every journal a dead coordinator left (under its reporter id, so
        what the dual-vector actor applied already is not counted again), and delete each once
        acknowledged; a journal whose call fails is left for a later try. Returns the journals
        taken over."""
        if self.journal is None:
            return 0
        adopted = 0
        for orphan in adopt_orphans(self.journal.folder, self.outbox.reporter):
            try:
                for start in range(0, len(orphan.reports), REPORTS_PER_CALL):
                    await self._observe.remote(orphan.reporter, orphan.reports[start : start + REPORTS_PER_CALL])
            except _SHARD_DOWN:
                orphan.release()
                continue
            orphan.forget()
            adopted += 1
        return adopted

    async def flush(self, timeout_s: float = 60.0) -> bool:
        """Until every report is acknowledged (True) or ``timeout_s`` passes (False); with a
        journal, dead coordinators' journals first."""
        await self.adopt_orphans()
        deadline = asyncio.get_running_loop().time() + timeout_s
        while self.outbox.unacked:
            if asyncio.get_running_loop().time() > deadline:
                return False
            self._send_waiting()
            if self._call is not None:
                await asyncio.wait([self._call], timeout=1.0)
            else:
                await asyncio.sleep(0.1)
        return True

    def _merge(self, answers: list[tuple[Hits, int]], k: int, partial: bool) -> Retrieved:
        if not answers:
            raise RuntimeError("no retrieval shard answered")
        # One answer (flat searched in process) is its own top-K already, in FAISS's order.
        merged = answers[0][0] if len(answers) == 1 else merge_top_k([hits for hits, _ in answers], k)
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
