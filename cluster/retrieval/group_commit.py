"""Group commit: many writers change one state, and each may be told "done" only once the change
is durable.

Two ways to make a change durable:

- **Snapshots only** (any storage, object stores included): one write of the whole state runs at a
  time, off the event loop, so changes keep arriving while it runs; the next write then covers
  all of them at once. Under load a write is shared by every change that came in during the one
  before it: as many writes a second as the storage allows, however many changes.
- **A change log beside the snapshots** (storage on a local or mounted filesystem): each change
  is a record appended to the log before its writer is told, a few microseconds instead of a
  snapshot's milliseconds, and the whole state is written only every ``every_changes`` changes or
  ``every_s`` seconds. A snapshot starts a new log file (a generation) at the moment its state is
  copied and names it; once the snapshot is written, older generations are deleted. A reader
  takes the newest snapshot and replays the records of the generations it names and after.

Either way a write that fails tells each of its waiters so, and the next ``durable()`` writes
again: nothing is reported durable that is not. An append that fails is truncated back, so the
log never holds half a record before a whole one.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import time
from pathlib import Path
from typing import Any, Callable, Iterator, Optional

# Snapshots of the whole state in log mode. Replaying a record costs about as much as applying
# it, so these bound a restart's replay to about a thousand records, at a snapshot or fewer a second.
SNAPSHOT_EVERY_CHANGES = 1000
SNAPSHOT_EVERY_S = 1.0


class ChangeLog:
    """Newline-terminated records in ``<folder>/<name>.log.<generation>``, appended with one
    ``write`` each (O_APPEND): a process killed between two appends leaves whole records."""

    def __init__(self, folder: Path, name: str):
        self.folder = Path(folder)
        self.name = name
        self.folder.mkdir(parents=True, exist_ok=True)
        self.generation = -1
        self._fd: Optional[int] = None
        self._size = 0

    def generations(self) -> list[int]:
        pattern = re.compile(rf"^{re.escape(self.name)}\.log\.(\d+)$")
        found = (pattern.match(p.name) for p in self.folder.iterdir())
        return sorted(int(m.group(1)) for m in found if m)

    def path(self, generation: int) -> Path:
        return self.folder / f"{self.name}.log.{generation}"

    def records(self, since: int) -> Iterator[dict]:
        """Every record of the generations ``since`` and after, oldest first. A last line without
        its newline (the process died inside the append) was never acknowledged: skipped."""
        for generation in self.generations():
            if generation < since:
                continue
            data = self.path(generation).read_bytes()
            for line in data.split(b"\n")[:-1]:
                yield json.loads(line)

    def start(self) -> int:
        """Open a new generation after every existing one; returns its number."""
        existing = self.generations()
        return self.rotate(max(existing[-1], self.generation) + 1 if existing else max(self.generation + 1, 0))

    def rotate(self, generation: Optional[int] = None) -> int:
        """Append to a new generation from now on (the next one, unless given)."""
        generation = self.generation + 1 if generation is None else generation
        fd = os.open(self.path(generation), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        if self._fd is not None:
            os.close(self._fd)
        self._fd, self.generation, self._size = fd, generation, os.fstat(fd).st_size
        return generation

    def append(self, data: bytes) -> None:
        assert self._fd is not None, "start() the log before appending"
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(self._fd, view) :]
        except OSError:
            os.ftruncate(self._fd, self._size)  # no half record for the next append to follow
            raise
        self._size += len(data)

    def drop_before(self, generation: int) -> None:
        for old in self.generations():
            if old < generation:
                self.path(old).unlink(missing_ok=True)

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def encode_record(record: dict) -> bytes:
    return json.dumps(record, separators=(",", ":")).encode() + b"\n"


class GroupCommit:
    """``snapshot()`` copies the state (on the event loop, between changes); ``write(copy)``
    stores it (in a thread). With a ``log``, ``changed(record)`` gives each change's record, and
    ``snapshot()`` must return a dict: the log generation its state runs up to is added under
    ``"log_from"``, for the reader to replay from."""

    def __init__(
        self,
        snapshot: Callable[[], Any],
        write: Callable[[Any], None],
        log: Optional[ChangeLog] = None,
        every_changes: int = SNAPSHOT_EVERY_CHANGES,
        every_s: float = SNAPSHOT_EVERY_S,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.snapshot = snapshot
        self.write = write
        self.log = log
        self.every_changes = every_changes
        self.every_s = every_s
        self.clock = clock
        self.changes = 0  # changes so far
        self.written = 0  # changes durable so far (in the log, or covered by the last snapshot)
        self.writes = 0  # snapshots written
        self.appends = 0  # log appends
        self.snapshot_covers = 0  # changes the last finished snapshot covered
        self.snapshot_error: Optional[BaseException] = None  # the last snapshot's failure, if it failed
        self._records: list[bytes] = []
        self._writing: Optional[asyncio.Future] = None
        self._last_snapshot = clock()

    def changed(self, record: bytes = b"") -> None:
        self.changes += 1
        if self.log is not None:
            self._records.append(record)

    @property
    def dirty(self) -> bool:
        return self.written < self.changes

    async def durable(self) -> None:
        """Return once every change made before this call is durable; raise what a write raised."""
        if self.log is not None:
            self._append()
            self._maybe_snapshot()
            return
        target = self.changes
        while self.written < target:
            if self._writing is None:
                self._writing = asyncio.ensure_future(self._write_once())
            await asyncio.shield(self._writing)

    def _append(self) -> None:
        """Every record not yet in the log, in one append (on the loop: a write of a few hundred
        bytes costs less than handing it to a thread)."""
        if not self._records:
            return
        assert self.log is not None
        covers = self.changes
        self.log.append(b"".join(self._records))
        self._records.clear()
        self.written = covers
        self.appends += 1

    def _maybe_snapshot(self) -> None:
        # Never while records wait for the log: the snapshot would count them, and their later
        # append into the newer generation would count them again on replay.
        if self._writing is not None or self._records or self.snapshot_covers == self.changes:
            return
        # After a failed snapshot only the clock triggers the next try, so a storage that keeps
        # failing costs a try every every_s, not one per change.
        due = self.snapshot_error is None and self.changes - self.snapshot_covers >= self.every_changes
        if not due and self.clock() - self._last_snapshot < self.every_s:
            return
        # The copy and the switch to a new generation happen together, between two changes: the
        # snapshot holds exactly the changes of the generations before the one it names.
        assert self.log is not None
        covers, state = self.changes, self.snapshot()
        log_from = self.log.rotate()
        self._writing = asyncio.ensure_future(self._write_snapshot({**state, "log_from": log_from}, covers))

    async def _write_snapshot(self, state: dict, covers: int) -> None:
        assert self.log is not None
        try:
            await asyncio.get_running_loop().run_in_executor(None, self.write, state)
        except Exception as exc:  # noqa: BLE001 - the log still holds every change: retried at the next trigger
            self.snapshot_error = exc
        else:
            self.snapshot_error = None
            self.snapshot_covers = covers
            self.writes += 1
            self.log.drop_before(state["log_from"])
        finally:
            self._last_snapshot = self.clock()
            self._writing = None

    async def _write_once(self) -> None:
        covers, state = self.changes, self.snapshot()
        try:
            await asyncio.get_running_loop().run_in_executor(None, self.write, state)
            self.written = max(self.written, covers)
            self.writes += 1
        finally:
            self._writing = None
