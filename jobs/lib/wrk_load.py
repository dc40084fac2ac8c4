"""HTTP load from ``wrk`` (C, the Debian package ``wrk``): the load generator that is not itself
the bottleneck on a small machine, as a Python one sharing the cores with the service was.

wrk runs one thread with ``concurrency`` connections for a fixed duration, POSTing
``{"user_id": n, "k": K}`` with n cycling over the users; it is pinned to the machine's last core
(``taskset``) where there is more than one, and its own CPU use is reported beside the figures.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

_LUA = """
counter = 0
partial = 0
threads = {{}}
setup = function(thread) table.insert(threads, thread) end
request = function()
  counter = counter + 1
  local body = string.format('{{"user_id": %d, "k": %d}}', {first_user} + counter % {n_users}, {k})
  return wrk.format("POST", "/retrieve", {{["Content-Type"] = "application/json"}}, body)
end
response = function(status, headers, body)
  if string.find(body, '"partial": true', 1, true) then partial = partial + 1 end
end
done = function(summary, latency, requests)
  local n = 0
  for _, thread in ipairs(threads) do n = n + thread:get("partial") end
  io.write(string.format("Partial answers: %d\\n", n))
end
"""
_UNIT_MS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 6e4}


class WrkMissing(RuntimeError):
    pass


@dataclass(frozen=True)
class WrkResult:
    requests: int
    qps: float
    p50_ms: float
    p99_ms: float
    non_2xx: int
    socket_errors: int
    partial: int  # answers that said "partial": true (a shard did not answer)
    generator_cpu: float  # wrk's CPU seconds over wall seconds (1.0 = one core busy)
    raw: str


def wrk_binary() -> str:
    found = shutil.which("wrk")
    if found is None:
        raise WrkMissing("wrk is not installed: `apt-get install wrk` (Debian/Ubuntu), or pass --load python")
    return found


def run_wrk(url: str, concurrency: int, duration_s: float, n_users: int, k: int, first_user: int = 0) -> WrkResult:
    _, finish = start_wrk(url, concurrency, duration_s, n_users, k, first_user)
    return finish()


def start_wrk(url: str, concurrency: int, duration_s: float, n_users: int, k: int, first_user: int = 0):
    """wrk started in the background: (process, finish) where ``finish()`` waits and parses, so
    the caller can act on the service (kill a shard) while the load runs."""
    tmp = tempfile.TemporaryDirectory()
    script = Path(tmp.name) / "retrieve.lua"
    script.write_text(_LUA.format(first_user=first_user, n_users=n_users, k=k))
    command = [wrk_binary(), "-t1", f"-c{concurrency}", f"-d{max(1, round(duration_s))}s", "--latency",
               "--timeout", "30s", "-s", str(script), url]
    if (os.cpu_count() or 1) > 1 and shutil.which("taskset"):
        command = ["taskset", "-c", str((os.cpu_count() or 1) - 1), *command]
    started = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)

    def finish() -> WrkResult:
        out = process.stdout.read() if process.stdout else ""
        _, status, usage = os.wait4(process.pid, 0)
        wall = time.perf_counter() - started
        tmp.cleanup()
        if os.waitstatus_to_exitcode(status) != 0:
            raise RuntimeError(f"wrk failed ({' '.join(command)}):\n{out[-2000:]}")
        return parse_wrk(out, (usage.ru_utime + usage.ru_stime) / wall)

    return process, finish


def parse_wrk(out: str, generator_cpu: float = float("nan")) -> WrkResult:
    """The figures from wrk's ``--latency`` report."""
    def percentile(name: str) -> float:
        found = re.search(rf"^\s*{name}%\s+([\d.]+)(us|ms|s|m)\s*$", out, re.MULTILINE)
        if not found:
            raise ValueError(f"no {name}% latency in wrk's output:\n{out[-1500:]}")
        return float(found.group(1)) * _UNIT_MS[found.group(2)]

    requests = re.search(r"^\s*(\d+) requests in", out, re.MULTILINE)
    rate = re.search(r"^Requests/sec:\s+([\d.]+)", out, re.MULTILINE)
    if not requests or not rate:
        raise ValueError(f"not a wrk report:\n{out[-1500:]}")
    non_2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    sockets = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    partial = re.search(r"^Partial answers: (\d+)", out, re.MULTILINE)
    return WrkResult(
        requests=int(requests.group(1)), qps=float(rate.group(1)), p50_ms=percentile("50"), p99_ms=percentile("99"),
        non_2xx=int(non_2xx.group(1)) if non_2xx else 0,
        socket_errors=sum(int(g) for g in sockets.groups()) if sockets else 0,
        partial=int(partial.group(1)) if partial else 0,
        generator_cpu=generator_cpu, raw=out,
    )
