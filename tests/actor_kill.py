"""Kill a Ray actor the way a crash would, and wait until its process is really gone.

ray.kill only asks: the old worker process can still answer a call or two before it dies, which
would make a "partial answer" or "restored state" check pass or fail by timing alone.
"""

from __future__ import annotations

import time
from pathlib import Path

import ray


def kill_and_wait_gone(handle, timeout_s: float = 30.0) -> int:
    """Kill `handle` (Ray may restart it) and return the old process's PID once it has exited."""
    old_pid = ray.get(handle.pid.remote())
    ray.kill(handle, no_restart=False)
    deadline = time.time() + timeout_s
    while time.time() < deadline:
        if not _running(old_pid):
            return old_pid
        time.sleep(0.05)
    raise AssertionError(f"actor process {old_pid} still alive {timeout_s:.0f} s after ray.kill")


def _running(pid: int) -> bool:
    """True while `pid` exists and is not a zombie (an exited child its parent has not reaped)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"  # the state follows the parenthesised name
