"""Measure the peak memory of every process of an FL run: the driver, the aggregator, each client
worker and Ray's own daemons, against the goal of at most 4 GiB (4 * 2**30 bytes) per process.

    python jobs/bench_memory.py [--limit-gib 4] [--check] [--report PAGE.md] -- --config configs/synthetic_1m.yaml --storage /tmp/runs

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
from jobs.lib.results_page import add_report_argument

FL_SIM = Path(__file__).resolve().parent / "fl_sim.py"
GIB = 2**30
# ``--check``'s exit status when a process peaked above the limit: none of fl_sim's own
# (``jobs/lib/cli.py``), which it passes on when the run itself failed.
EXIT_OVER_LIMIT = 4


def largest(roles: dict) -> ProcessPeak:
    return max((p for peaks in roles.values() for p in peaks), key=lambda p: p.peak_bytes)


def by_class(roles: dict) -> dict:
    """Roles merged by actor class: a named actor's process title reads ``<name>:<Class>`` in some
    phases and ``<Class>`` in others, and both are the same kind of process."""
    merged: dict[str, list[ProcessPeak]] = {}
    for role, peaks in roles.items():
        merged.setdefault(role.rsplit(":", 1)[-1], []).extend(peaks)
    merged = {role: sorted(peaks, key=lambda p: -p.peak_bytes) for role, peaks in merged.items()}
    return dict(sorted(merged.items(), key=lambda item: -item[1][0].peak_bytes))


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


def job_config(job: Sequence[str]):
    """The config fl_sim was given (``--config``, ``--set``), or None when it cannot be read."""
    from configs import ConfigError, load_config

    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--config", default="configs/demo.yaml")  # fl_sim's own default
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    known, _ = parser.parse_known_args(list(job))
    try:
        return load_config(known.config, known.overrides)
    except (ConfigError, OSError):
        return None


def memory_page(command: str, roles: dict, limit_bytes: float, code: int, wall_s: float, cfg=None):
    """The results page: each process class's largest peak against the limit, and the verdict.
    ``cfg``: the run's config, for the title and the seed (None: unknown)."""
    from jobs.lib.job_page import dataset_title, plural, seeds_phrase
    from jobs.lib.results_page import ResultsPage, markdown_table

    limit = limit_bytes / GIB
    world = cfg.name if cfg is not None else "an FL run"
    if cfg is not None and cfg.data.source == "synthetic":
        world = dataset_title(f"synthetic:{cfg.data.synthetic.n_users}x{cfg.data.synthetic.n_items}")
    intro = f"jobs/fl_sim.py ran as a child and exited {code} after {wall_s:,.0f} s."
    if cfg is not None:
        intro = (f"{plural(cfg.fl.rounds, 'round')} × {cfg.fl.clients_per_round:,} clients per round, evaluated "
                 f"every {plural(cfg.fl.eval_every, 'round')} and after the last; " + intro)
    page = ResultsPage(title=f"Peak memory per process against {limit:g} GiB: {world}", command=command,
                       seeds=[cfg.seed] if cfg is not None else (),
                       intro=intro + " Every figure is the kernel's peak resident set (VmHWM) in GiB (2**30 bytes), "
                                     "sampled twice a second over the run's whole process tree, Ray's actors included.")
    rows = [[role, len(peaks), f"{peaks[0].peak_bytes / GIB:.2f}", "yes" if peaks[0].peak_bytes <= limit_bytes else "**no**"]
            for role, peaks in roles.items()]
    page.add("Largest peak per process class", markdown_table(
        ["process class", "processes", "largest peak (GiB)", f"within {limit:g} GiB"], rows))
    worst = largest(roles)
    met = worst.peak_bytes <= limit_bytes
    runs = f"One run, {seeds_phrase([cfg.seed])}" if cfg is not None else "One run"
    page.add("Verdict", "\n".join([
        f"- The largest process peaked at {worst.peak_bytes / GIB:.2f} GiB ({role_name(roles, worst)}): the goal of at "
        f"most {limit:g} GiB per process is "
        + (f"met, {limit - worst.peak_bytes / GIB:.2f} GiB below it." if met
           else f"not met, {worst.peak_bytes / GIB - limit:.2f} GiB over it."),
        f"- {runs}: not repeated, so no interval.",
    ]))
    return page


def role_name(roles: dict, peak: ProcessPeak) -> str:
    return next(role for role, peaks in roles.items() if peak in peaks)


def main(argv: Optional[Sequence[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    own, job = (argv[: argv.index("--")], argv[argv.index("--") + 1 :]) if "--" in argv else (argv, [])
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--limit-gib", type=float, default=4.0, help="per-process limit in GiB (2**30 bytes)")
    parser.add_argument("--check", action="store_true",
                        help=f"exit {EXIT_OVER_LIMIT} when any process peaked above the limit")
    add_report_argument(parser)
    args = parser.parse_args(own)
    limit_bytes = args.limit_gib * GIB
    started = time.perf_counter()
    code, tree = run_and_watch([sys.executable, str(FL_SIM), *job])
    wall_s = time.perf_counter() - started
    print(f"fl_sim exited {code} after {wall_s:.0f} s")
    roles = by_class(tree.by_role())
    for line in report(roles, limit_bytes) if roles else ["no process was measured"]:
        print(line)
    if args.report and (code != 0 or not roles):
        print("no results page: the run failed or measured nothing", file=sys.stderr)
    elif args.report:
        from jobs.lib.job_page import job_command, write_page

        write_page(memory_page(job_command(__file__, argv), roles, limit_bytes, code, wall_s, job_config(job)),
                   args.report)
    if not args.check:
        return code
    status = check_status(code, roles, limit_bytes)
    if status == EXIT_OVER_LIMIT:
        print(f"check failed: a process peaked above {args.limit_gib:g} GiB", file=sys.stderr)
    return status


if __name__ == "__main__":
    sys.exit(main())
