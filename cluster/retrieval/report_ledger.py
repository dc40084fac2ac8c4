"""Exactly-once exposure reports from coordinators to the dual-vector actor.

FairSync's dual step depends on how often each group was served, so every served list must be
counted once: not lost while the dual-vector actor restarts, not counted twice when a report
that was applied is sent again. Each coordinator numbers its reports (``Outbox``) and keeps the
unacknowledged ones to send again; the dual-vector actor remembers which numbers it has applied
(``AppliedReports``), persisted with its state in the same write, and ignores repeats.
"""

from __future__ import annotations

import itertools
import uuid
from dataclasses import dataclass, field
from typing import Any, Callable, Optional


@dataclass
class AppliedReports:
    """Per reporter: every number up to ``upto`` was applied, plus the few above it in ``above``
    (reports can arrive out of order when one fails and is sent again later)."""

    upto: dict[str, int] = field(default_factory=dict)
    above: dict[str, set[int]] = field(default_factory=dict)

    def is_new(self, reporter: str, seq: int) -> bool:
        return seq > self.upto.get(reporter, -1) and seq not in self.above.get(reporter, set())

    def mark(self, reporter: str, seq: int) -> None:
        upto = self.upto.get(reporter, -1)
        pending = self.above.setdefault(reporter, set())
        pending.add(seq)
        while upto + 1 in pending:
            upto += 1
            pending.discard(upto)
        self.upto[reporter] = upto
        if not pending:
            del self.above[reporter]

    def state_dict(self) -> dict[str, Any]:
        return {"upto": dict(self.upto), "above": {r: sorted(s) for r, s in self.above.items()}}

    @classmethod
    def from_state(cls, state: dict[str, Any] | None) -> "AppliedReports":
        if not state:
            return cls()
        return cls(
            {r: int(v) for r, v in state["upto"].items()}, {r: {int(x) for x in v} for r, v in state["above"].items()}
        )


# Reports a coordinator holds while the dual-vector actor cannot be reached: minutes of serving
# at full load on a small machine, and a few MB; past it the oldest are given up and counted.
OUTBOX_CAPACITY = 10_000


@dataclass
class Outbox:
    """A coordinator's numbered reports that the dual-vector actor has not acknowledged, at most
    ``capacity``: when it is full the oldest report is dropped and its requests are counted in
    ``dropped_requests`` (its payload's last value), so a dual-vector actor gone for good cannot
    make the outbox grow without bound."""

    reporter: str = field(default_factory=lambda: uuid.uuid4().hex)
    unacked: dict[int, tuple] = field(default_factory=dict)
    capacity: int = OUTBOX_CAPACITY
    dropped_requests: int = 0
    # told the number of each report given up (a journal records it, so it is never counted later)
    on_drop: Optional[Callable[[int], None]] = None
    _numbers: Any = field(default_factory=itertools.count)

    def add(self, *payload) -> int:
        seq = next(self._numbers)
        self.unacked[seq] = payload
        while len(self.unacked) > self.capacity:
            oldest = next(iter(self.unacked))  # added in number order
            self.dropped_requests += int(self.unacked.pop(oldest)[-1])
            if self.on_drop is not None:
                self.on_drop(oldest)
        return seq

    def oldest(self) -> Optional[int]:
        """The number of the oldest report waiting, None when none waits."""
        return next(iter(self.unacked), None)

    def ack(self, seq: int) -> None:
        self.unacked.pop(seq, None)

    def waiting(self) -> list[tuple[int, tuple]]:
        """The unacknowledged reports, oldest first."""
        return sorted(self.unacked.items())
