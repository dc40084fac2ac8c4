"""Peak memory of every process of an FL run: the driver, the aggregator, each client worker and
Ray's own daemons, against the goal of at most 4 GiB (4 * 2**30 bytes) per process.

    python jobs/bench_memory.py [--limit-gib 4] [--check] -- --config configs/synthetic_1m.yaml --storage /tmp/runs

Every figure is in GiB (2**30 bytes). ``--check`` exits non-zero (``EXIT_OVER_LIMIT``) when any
process peaked above the limit, or with fl_sim's own code when the run failed.
Everything after ``--`` goes to ``jobs/fl_sim.py``. The job runs as a child that starts its own
local Ray, so every actor is one of its descendants (see ``jobs/lib/process_peaks.py``). Linux only.
"""

from __future__ import annotations

import sys
from pathlib import Path

if __package__ in (None, ""):
    sys.path[0] = str(Path(__file__).resolve().parents[1])

import argparse
import time
from typing import Optional, Sequence

from jobs.lib.process_peaks import ProcessPeak, run_and_watch

FL_SIM = Path(__file__).resolve().parent / "fl_sim.py"
GIB = 2**30
# ``--check``'s exit status when a process peaked above the limit: none of fl_sim's own
# (``jobs/lib/cli.py``), which it passes on when the run itself failed.
EXIT_OVER_LIMIT = 4


def largest(roles: dict) -> ProcessPeak:
    return max((p for peaks in roles.values() for p in peaks), key=lambda p: p.peak_bytes)


def report(roles: dict, limit_bytes: float) -> list[str]:
    lines = []
    for role, peaks in roles.items():
        top = peaks[0]
        lines.append(f"{role:24s} {len(peaks):3d} process(es), largest {top.peak_bytes / GIB:6.2f} GiB (pid {top.pid})")
    worst = largest(roles)
    verdict = "met" if worst.peak_bytes <= limit_bytes else "NOT met"
    lines.append(f"largest process: {worst.peak_bytes / GIB:.2f} GiB ({worst.name[:60]}); "
                 f"goal of at most {limit_bytes / GIB:g} GiB (2**30 bytes) per process: {verdict}")
    return lines


def check_status(code: int, roles: dict, limit_bytes: float) -> int:
    """``--check``'s exit status: fl_sim's when it failed, else EXIT_OVER_LIMIT when a process
    peaked above ``limit_bytes``, else 0. A run that saw no process at all fails too: it
    measured nothing."""
    if code != 0:
        return code
    if not roles or largest(roles).peak_bytes > limit_bytes:
        return EXIT_OVER_LIMIT
    return 0


def main(argv: Optional[Sequence[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    own, job = (argv[: argv.index("--")], argv[argv.index("--") + 1 :]) if "--" in argv else (argv, [])
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--limit-gib", type=float, default=4.0, help="per-process limit in GiB (2**30 bytes)")
    parser.add_argument("--check", action="store_true",
                        help=f"exit {EXIT_OVER_LIMIT} when any process peaked above the limit")
    args = parser.parse_args(own)
    limit_bytes = args.limit_gib * GIB
    started = time.perf_counter()
    code, tree = run_and_watch([sys.executable, str(FL_SIM), *job])
    print(f"fl_sim exited {code} after {time.perf_counter() - started:.0f} s")
    roles = tree.by_role()
    for line in report(roles, limit_bytes) if roles else ["no process was measured"]:
        print(line)
    if not args.check:
        return code
    status = check_status(code, roles, limit_bytes)
    if status == EXIT_OVER_LIMIT:
        print(f"check failed: a process peaked above {args.limit_gib:g} GiB", file=sys.stderr)
    return status


if __name__ == "__main__":
    sys.exit(main())
