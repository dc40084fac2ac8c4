"""The most queries per second the retriever could serve on this machine's cores, from two costs
the same benchmark run measures: the CPU a query's search takes ((a): one index, one thread, a
batch of 64, so wall time is CPU time) and the CPU the whole machine spends per request when Serve
answers at once ((d): proxy, replica, load generator, Ray's daemons). A retriever that added
nothing to search and Serve would serve ``cores / (search + floor)`` queries a second."""

from __future__ import annotations

import os
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Iterator

# /proc/stat's first line: cpu user nice system idle iowait irq softirq steal guest guest_nice
_IDLE_FIELDS = (3, 4)


def busy_cpu_seconds() -> float:
    """CPU seconds the whole machine has spent on anything but idling (and waiting on I/O) since boot."""
    with open("/proc/stat") as stat:
        ticks = [int(value) for value in stat.readline().split()[1:9]]
    busy = sum(t for i, t in enumerate(ticks) if i not in _IDLE_FIELDS)
    return busy / os.sysconf("SC_CLK_TCK")


@contextmanager
def machine_cpu() -> Iterator[list[float]]:
    """The machine's busy CPU seconds over the block, in the one-element list it yields."""
    spent = [0.0]
    started = busy_cpu_seconds()
    try:
        yield spent
    finally:
        spent[0] = busy_cpu_seconds() - started


@dataclass(frozen=True)
class ServingBound:
    """``cores``; ``search_cpu_s`` and ``floor_cpu_s``: CPU seconds per query of the search and of
    Serve answering at once."""

    cores: int
    search_cpu_s: float
    floor_cpu_s: float

    @property
    def qps(self) -> float:
        return self.cores / (self.search_cpu_s + self.floor_cpu_s)
