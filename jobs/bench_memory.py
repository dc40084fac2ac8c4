"""Peak memory of every process of an FL run: the driver, the aggregator, each client worker and
Ray's own daemons, against the 4 GB-per-process goal.

    python jobs/bench_memory.py [--limit-gb 4] -- --config configs/synthetic_1m.yaml --storage /tmp/runs

Everything after ``--`` goes to ``jobs/fl_sim.py``. The job runs as a child that starts its own
local Ray, so every actor is one of its descendants (see ``jobs/process_peaks.py``). Linux only.
"""

from __future__ import annotations

import sys
from pathlib import Path

if __package__ in (None, ""):
    sys.path[0] = str(Path(__file__).resolve().parents[1])

import argparse
import time
from typing import Optional, Sequence

from jobs.process_peaks import run_and_watch

FL_SIM = Path(__file__).resolve().parent / "fl_sim.py"


def report(roles: dict, limit_bytes: float) -> list[str]:
    lines = []
    for role, peaks in roles.items():
        top = peaks[0]
        lines.append(f"{role:24s} {len(peaks):3d} process(es), largest {top.peak_bytes / 1e9:6.2f} GB (pid {top.pid})")
    worst = max((p for peaks in roles.values() for p in peaks), key=lambda p: p.peak_bytes)
    verdict = "met" if worst.peak_bytes <= limit_bytes else "NOT met"
    lines.append(f"largest process: {worst.peak_bytes / 1e9:.2f} GB ({worst.name[:60]}); "
                 f"goal of at most {limit_bytes / 1e9:g} GB per process: {verdict}")
    return lines


def main(argv: Optional[Sequence[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    own, job = (argv[: argv.index("--")], argv[argv.index("--") + 1 :]) if "--" in argv else (argv, [])
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--limit-gb", type=float, default=4.0)
    args = parser.parse_args(own)
    started = time.perf_counter()
    code, tree = run_and_watch([sys.executable, str(FL_SIM), *job])
    print(f"fl_sim exited {code} after {time.perf_counter() - started:.0f} s")
    for line in report(tree.by_role(), args.limit_gb * 1e9):
        print(line)
    return code


if __name__ == "__main__":
    sys.exit(main())
