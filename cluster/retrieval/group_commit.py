"""Group commit: many writers change one state, and each may be told "done" only once a write of
the state that includes its change has finished.

One write runs at a time, off the event loop, so changes keep arriving while it runs; the next
write then covers all of them at once. Under load a write is shared by every change that came
in during the one before it: as many writes a second as the storage allows, however many
changes. A write that fails tells each of its waiters so, and the next ``durable()`` writes
again: nothing is reported durable that is not.
"""

from __future__ import annotations

import asyncio
from typing import Any, Callable, Optional


class GroupCommit:
    """``snapshot()`` copies the state (on the event loop, between changes); ``write(copy)``
    stores it (in a thread)."""

    def __init__(self, snapshot: Callable[[], Any], write: Callable[[Any], None]):
        self.snapshot = snapshot
        self.write = write
        self.changes = 0  # changes so far
        self.written = 0  # changes the last finished write covered
        self.writes = 0
        self._writing: Optional[asyncio.Future] = None

    def changed(self) -> None:
        self.changes += 1

    @property
    def dirty(self) -> bool:
        return self.written < self.changes

    async def durable(self) -> None:
        """Return once every change made before this call is written; raise what a write raised."""
        target = self.changes
        while self.written < target:
            if self._writing is None:
                self._writing = asyncio.ensure_future(self._write_once())
            await asyncio.shield(self._writing)

    async def _write_once(self) -> None:
        covers, state = self.changes, self.snapshot()
        try:
            await asyncio.get_running_loop().run_in_executor(None, self.write, state)
            self.written = max(self.written, covers)
            self.writes += 1
        finally:
            self._writing = None
