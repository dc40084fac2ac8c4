"""A coordinator's exposure reports made durable where they are made: appended to its own journal
file before the lists they count are answered, so an answer waits for a local append (a few
microseconds) instead of a round trip to the dual-vector actor.

Each coordinator journals under its reporter id and holds an exclusive ``flock`` on
``<reporter>.lock`` for as long as its process lives. The reports go on to the dual-vector actor
in the background, several per call, and the actor applies each (reporter, number) once
(``report_ledger.py``). A coordinator that dies leaves its journal and releases its lock with its
process; any other coordinator over the same folder takes the lock (``adopt_orphans``), sends
what the journal holds under the dead reporter's id, where the numbers already applied are
ignored, and deletes it once acknowledged. A report the outbox gave up (the dual-vector actor
unreachable for long) is journalled as dropped, so it is never counted later either.

The journal is a file: it needs storage on a local or mounted filesystem (on a cluster, one
every node mounts). Like the dual-vector actor's change log, an append survives the death of the
process, not of the machine: the kernel holds it, no fsync.
"""

from __future__ import annotations

import fcntl
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from cluster.retrieval.group_commit import ChangeLog, encode_record

# Records per journal file before the next one starts; a file goes once all its reports are acknowledged.
ROTATE_EVERY = 5000

Report = tuple[int, list[float], int]  # (number, slots per group, requests)


def _lock(path: Path) -> Optional[int]:
    """An exclusive lock on ``path`` (created if missing), or None when a live process holds it."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    return fd


class ReportJournal:
    def __init__(self, folder: Path, reporter: str, rotate_every: int = ROTATE_EVERY):
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.reporter = reporter
        fd = _lock(self.folder / f"{reporter}.lock")
        if fd is None:
            raise RuntimeError(f"journal {reporter} in {self.folder} is held by another process")
        self._lock_fd = fd
        self.log = ChangeLog(self.folder, reporter)
        self.log.start()
        self.rotate_every = rotate_every
        self._last_seq: dict[int, int] = {}  # generation -> the largest report number in it
        self._in_generation = 0

    def append(self, seq: int, counts: list[float], n_requests: int) -> None:
        self._write({"s": seq, "c": counts, "n": n_requests}, seq)

    def dropped(self, seq: int) -> None:
        """Report ``seq`` was given up unsent: whoever adopts this journal must not count it."""
        self._write({"s": seq, "drop": 1}, seq)

    def _write(self, record: dict, seq: int) -> None:
        self.log.append(encode_record(record))
        generation = self.log.generation
        self._last_seq[generation] = max(seq, self._last_seq.get(generation, -1))
        self._in_generation += 1
        if self._in_generation >= self.rotate_every:
            self.log.rotate()
            self._in_generation = 0

    def acknowledged_below(self, oldest_waiting: Optional[int]) -> None:
        """Delete the earlier files whose every report is acknowledged (all below
        ``oldest_waiting``; None: none waits)."""
        for generation, last in list(self._last_seq.items()):
            if generation != self.log.generation and (oldest_waiting is None or last < oldest_waiting):
                self.log.path(generation).unlink(missing_ok=True)
                del self._last_seq[generation]

    def close(self) -> None:
        """Give the journal up while it still holds reports: it becomes an orphan for others to adopt."""
        self.log.close()
        os.close(self._lock_fd)


@dataclass
class Orphan:
    """A dead coordinator's journal, locked by its adopter until ``forget``."""

    folder: Path
    reporter: str
    reports: list[Report]
    lock_fd: int

    def forget(self) -> None:
        """Its reports are acknowledged: the journal goes."""
        log = ChangeLog(self.folder, self.reporter)
        log.drop_before(10**18)
        (self.folder / f"{self.reporter}.lock").unlink(missing_ok=True)
        os.close(self.lock_fd)

    def release(self) -> None:
        """Not sent this time: left for the next try (by this coordinator or another)."""
        os.close(self.lock_fd)


def adopt_orphans(folder: Path, own: str) -> list[Orphan]:
    """The journals in ``folder`` whose coordinator is gone (their lock could be taken), other
    than ``own``, each with its reports that were not dropped, oldest first."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    orphans = []
    for lock in sorted(folder.glob("*.lock")):
        reporter = lock.name[: -len(".lock")]
        if reporter == own:
            continue
        try:
            fd = _lock(lock)
        except FileNotFoundError:  # adopted and forgotten meanwhile
            continue
        if fd is None:
            continue  # its coordinator is alive
        reports: dict[int, Report] = {}
        for record in ChangeLog(folder, reporter).records(since=0):
            if record.get("drop"):
                reports.pop(int(record["s"]), None)
            else:
                reports[int(record["s"])] = (int(record["s"]), record["c"], int(record["n"]))
        orphans.append(Orphan(folder, reporter, [reports[s] for s in sorted(reports)], fd))
    return orphans
