"""Peak resident memory of a command and every process it starts, Ray's actors included.

Ray started by a job runs its daemons and actor processes as the job's descendants, so a walk
of ``/proc`` from the job's pid finds all of them. The kernel keeps each process's peak RSS
(``VmHWM``); sampling it twice a second misses nothing but processes that live less than that.
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

_PROC = Path("/proc")


@dataclass
class ProcessPeak:
    pid: int
    name: str
    peak_bytes: int


@dataclass
class TreePeaks:
    root: int
    peaks: dict[int, ProcessPeak] = field(default_factory=dict)

    def sample(self) -> None:
        parents = _parents()
        for pid in _descendants(self.root, parents):
            peak, name = _status_peak(pid), _name(pid)
            if peak is None:
                continue
            known = self.peaks.get(pid)
            if known is None or peak > known.peak_bytes:
                self.peaks[pid] = ProcessPeak(pid, name or (known.name if known else "?"), peak)

    def by_role(self) -> dict[str, list[ProcessPeak]]:
        roles: dict[str, list[ProcessPeak]] = {}
        for peak in sorted(self.peaks.values(), key=lambda p: -p.peak_bytes):
            roles.setdefault(role_of(peak, self.root), []).append(peak)
        return roles


def role_of(peak: ProcessPeak, root: int) -> str:
    if peak.pid == root:
        return "driver"
    if peak.name.startswith("ray::"):
        return peak.name[5:].split(".")[0].split(" ")[0] or "ray worker"
    return "ray daemons and others"


def run_and_watch(command: Sequence[str], interval_s: float = 0.5) -> tuple[int, TreePeaks]:
    child = subprocess.Popen(list(command))
    tree = TreePeaks(child.pid)
    while child.poll() is None:
        tree.sample()
        time.sleep(interval_s)
    return child.returncode, tree


def _parents() -> dict[int, int]:
    parents = {}
    for entry in os.listdir(_PROC):
        if not entry.isdigit():
            continue
        try:
            stat = (_PROC / entry / "stat").read_text()
        except OSError:
            continue
        # The command name (field 2) may hold spaces and parentheses: split after its last ')'.
        parents[int(entry)] = int(stat[stat.rindex(")") + 2 :].split()[1])
    return parents


def _descendants(root: int, parents: dict[int, int]) -> list[int]:
    children: dict[int, list[int]] = {}
    for pid, parent in parents.items():
        children.setdefault(parent, []).append(pid)
    found, frontier = [root], [root]
    while frontier:
        frontier = [child for pid in frontier for child in children.get(pid, [])]
        found.extend(frontier)
    return found


def _status_peak(pid: int) -> int | None:
    try:
        for line in (_PROC / str(pid) / "status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def _name(pid: int) -> str:
    try:
        return (_PROC / str(pid) / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return ""
