"""Write a device-availability trace (Parquet) for ``fl.availability: {kind: trace, path: ...}``:
one row per device class (tier) and window — columns device_class, start_s, end_s — from a daily
charging window whose length is each tier's share of the day.

    python jobs/availability_trace.py --out configs/availability/diurnal_tiers.parquet
        [--shares low=0.3 mid=0.5 high=0.7] [--start-hour 22] [--period-s 86400]

A window that crosses the period's end is written as two rows. Load it with a
``phase_jitter_s`` so that the devices of one class do not all come and go at the same second.
"""

from __future__ import annotations

import sys
from pathlib import Path

if __package__ in (None, ""):
    sys.path[0] = str(Path(__file__).resolve().parents[1])

from typing import Optional, Sequence

import pyarrow as pa

from cluster.storage import Storage
from jobs.lib.cli import EXIT_BAD_INPUT, first_paragraph, run_guarded


def trace_table(shares: dict[str, float], start_s: float, period_s: float) -> pa.Table:
    """Each class's window [start, start + share · period), split where it crosses the period's end."""
    classes, starts, ends = [], [], []
    for name, share in shares.items():
        begin, end = start_s % period_s, start_s % period_s + share * period_s
        pieces = [(begin, min(end, period_s))] + ([(0.0, end - period_s)] if end > period_s else [])
        for a, b in pieces:
            classes.append(name)
            starts.append(float(a))
            ends.append(float(b))
    return pa.table({"device_class": classes, "start_s": starts, "end_s": ends})


def main(argv: Optional[Sequence[str]] = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(description=first_paragraph(__doc__))
    parser.add_argument("--out", required=True, help="the trace file: a path or storage URI")
    parser.add_argument("--shares", nargs="+", default=["low=0.3", "mid=0.5", "high=0.7"], metavar="TIER=SHARE",
                        help="each tier's share of the period it is available (default: %(default)s)")
    parser.add_argument("--start-hour", type=float, default=22.0, help="when every window opens (default: 22)")
    parser.add_argument("--period-s", type=float, default=86400.0, help="the period in seconds (default: a day)")
    args = parser.parse_args(list(sys.argv[1:] if argv is None else argv))
    try:
        shares = {name: float(value) for name, value in (item.split("=", 1) for item in args.shares)}
    except ValueError:
        print(f"error: --shares takes TIER=SHARE pairs, got {args.shares}", file=sys.stderr)
        return EXIT_BAD_INPUT
    if args.period_s <= 0 or not all(0 < s <= 1 for s in shares.values()):
        print("error: --period-s must be positive and every share in (0, 1]", file=sys.stderr)
        return EXIT_BAD_INPUT
    out = Storage(args.out)
    table = trace_table(shares, args.start_hour * 3600.0 * args.period_s / 86400.0, args.period_s)
    out.write_parquet("", table)
    print(f"wrote {out.describe()}: {table.num_rows} windows")
    return 0


if __name__ == "__main__":
    sys.exit(run_guarded(main))
