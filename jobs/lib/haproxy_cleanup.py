"""Serve's HA proxy (``RAY_SERVE_ENABLE_HA_PROXY=1``) runs HAProxy in a session of its own, so
it outlives the Ray that started it when that Ray is stopped abruptly, and keeps its fixed stats
port (8404): the next HA-proxy Serve on the machine then cannot start. Whoever starts such a Ray
notes the HAProxy processes before and ends, by PID, those that appeared."""

from __future__ import annotations

import os
import signal
from pathlib import Path


def haproxy_pids() -> set[int]:
    """PIDs of the HAProxy processes running now."""
    pids = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                program = (entry / "cmdline").read_bytes().split(b"\0")[0]
            except OSError:
                continue
            if program.endswith(b"/haproxy"):
                pids.add(int(entry.name))
    return pids


def stop_new_haproxies(before: set[int]) -> list[int]:
    """SIGTERM to every HAProxy that was not running at ``before``; returns their PIDs."""
    stopped = []
    for pid in sorted(haproxy_pids() - before):
        try:
            os.kill(pid, signal.SIGTERM)
            stopped.append(pid)
        except ProcessLookupError:
            pass
    return stopped
