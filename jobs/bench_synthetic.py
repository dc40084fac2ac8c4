"""Benchmark the synthetic generator: wall time, throughput and peak memory at two scales.

    python jobs/bench_synthetic.py [--config configs/synthetic_1m.yaml] [--scales 0.1 1.0] [--report PAGE.md]

Each scale runs in a fresh process so its peak RSS is its own; the smaller scale is the
baseline the larger one is compared against (throughput ratio ~1 means linear scaling).
"""

from __future__ import annotations

import sys
from pathlib import Path

if __package__ in (None, ""):
    sys.path[0] = str(Path(__file__).resolve().parents[1])

import argparse
import json
import resource
import subprocess
import tempfile
import time
from typing import Optional, Sequence

from cluster.data.parquet_io import save_dataset
from cluster.data.synthetic import generate_synthetic
from jobs.lib.cli import config_parser, load_or_exit, run_guarded, first_paragraph
from jobs.lib.job_page import job_command, seeds_phrase, write_page
from jobs.lib.results_page import ResultsPage, add_report_argument, markdown_table


def _peak_rss_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB on Linux


def measure_one(config: str, overrides: Sequence[str], scale: float) -> dict:
    from configs import load_config

    cfg = load_config(config, overrides).data.synthetic
    cfg = cfg.model_copy(update={
        "n_users": max(100, int(cfg.n_users * scale)),
        "target_interactions": max(100 * cfg.min_user_interactions, int(cfg.target_interactions * scale)),
    })
    seed = load_config(config, overrides).seed
    rss_before = _peak_rss_gib()
    started = time.perf_counter()
    data = generate_synthetic(cfg, seed)
    generate_s = time.perf_counter() - started
    rss_generate = _peak_rss_gib()
    with tempfile.TemporaryDirectory() as tmp:
        started = time.perf_counter()
        save_dataset(data, Path(tmp) / "entry")
        write_s = time.perf_counter() - started
        parquet_mb = sum(p.stat().st_size for p in (Path(tmp) / "entry").iterdir()) / 2**20
    return {
        "scale": scale,
        "users": data.n_users,
        "items": data.n_items,
        "interactions": len(data.interactions),
        "generate_s": generate_s,
        "interactions_per_s": len(data.interactions) / generate_s,
        "parquet_write_s": write_s,
        "parquet_mb": parquet_mb,
        "peak_rss_gib_before": rss_before,
        "peak_rss_gib_generate": rss_generate,
        "peak_rss_gib_total": _peak_rss_gib(),
    }


def generator_page(command: str, seed: int, rows: list[dict]) -> ResultsPage:
    """The results page: one row per scale, and how time, throughput and memory grow with it."""
    top = rows[-1]
    page = ResultsPage(
        title=f"Synthetic generator at scale: up to {top['users']:,} users × {top['items']:,} items, "
              f"{top['interactions']:,} interactions",
        command=command, seeds=[seed],
        intro=("Each scale (a fraction of the config's users and interactions) is generated in a fresh process, so "
               "its peak resident memory is its own, then written to Parquet."))
    page.add("Time, throughput and memory per scale", markdown_table(
        ["scale", "users", "items", "interactions", "generate (s)", "M interactions/s", "Parquet write (s)",
         "Parquet (MiB)", "peak RSS, generate (GiB)", "peak RSS, with write (GiB)", "after imports (GiB)"],
        [[f"{r['scale']:g}", f"{r['users']:,}", f"{r['items']:,}", f"{r['interactions']:,}", f"{r['generate_s']:.1f}",
          f"{r['interactions_per_s'] / 1e6:.2f}", f"{r['parquet_write_s']:.1f}", f"{r['parquet_mb']:.0f}",
          f"{r['peak_rss_gib_generate']:.2f}", f"{r['peak_rss_gib_total']:.2f}", f"{r['peak_rss_gib_before']:.2f}"]
         for r in rows]))
    lines = []
    if len(rows) > 1:
        base = rows[0]
        throughput = top["interactions_per_s"] / base["interactions_per_s"]
        lines.append(f"- From scale {base['scale']:g} to {top['scale']:g}: interactions ×"
                     f"{top['interactions'] / base['interactions']:.1f}, generation time ×"
                     f"{top['generate_s'] / base['generate_s']:.1f}, throughput ×{throughput:.2f} (×1.00 is linear "
                     f"scaling; below it, the time grows faster than the data), peak memory ×"
                     f"{top['peak_rss_gib_generate'] / base['peak_rss_gib_generate']:.1f}.")
    lines.append(f"- At the largest scale: {top['interactions']:,} interactions generated in {top['generate_s']:.1f} s "
                 f"with a peak of {top['peak_rss_gib_total']:.2f} GiB including the Parquet write.")
    lines.append(f"- One run per scale, {seeds_phrase([seed])}: no confidence interval; wall times move with whatever "
                 "else the machine runs.")
    page.add("What the run shows", "\n".join(lines))
    return page


def main(argv: Optional[Sequence[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = config_parser(first_paragraph(__doc__), default_config="configs/synthetic_1m.yaml")
    parser.add_argument("--scales", type=float, nargs="+", default=[0.1, 1.0],
                        help="fractions of the config's users and interactions, each run in a fresh process; "
                             "the first is the baseline (default: 0.1 1.0)")
    parser.add_argument("--one", type=float, help=argparse.SUPPRESS)  # internal: one scale in a child process
    add_report_argument(parser)
    args = parser.parse_args(argv)
    cfg = load_or_exit(args)  # bad config -> exit 2 before any work
    if args.one is not None:
        print(json.dumps(measure_one(args.config, args.overrides, args.one)))
        return 0
    rows = []
    for scale in args.scales:
        command = [sys.executable, __file__, "--config", args.config, "--one", str(scale)]
        for item in args.overrides:
            command += ["--set", item]
        done = subprocess.run(command, capture_output=True, text=True, check=True)
        rows.append(json.loads(done.stdout.strip().splitlines()[-1]))
        row = rows[-1]
        print(f"scale {scale:>4}: {row['users']:>9,} users x {row['items']:,} items, {row['interactions']:>12,} "
              f"interactions: generate {row['generate_s']:6.1f} s ({row['interactions_per_s'] / 1e6:.2f} M/s), "
              f"Parquet {row['parquet_write_s']:5.1f} s / {row['parquet_mb']:.0f} MiB, "
              f"peak RSS {row['peak_rss_gib_generate']:.2f} GiB generate, {row['peak_rss_gib_total']:.2f} GiB with write "
              f"(imports {row['peak_rss_gib_before']:.2f} GiB)")
    if len(rows) > 1:
        base, top = rows[0], rows[-1]
        print(f"ratio {top['scale']}/{base['scale']}: interactions x{top['interactions'] / base['interactions']:.1f}, "
              f"time x{top['generate_s'] / base['generate_s']:.1f}, "
              f"throughput x{top['interactions_per_s'] / base['interactions_per_s']:.2f}, "
              f"peak RSS x{top['peak_rss_gib_generate'] / base['peak_rss_gib_generate']:.1f}")
    if args.report:
        write_page(generator_page(job_command(__file__, argv), cfg.seed, rows), args.report)
    return 0


if __name__ == "__main__":
    sys.exit(run_guarded(main))
