"""Price secure aggregation on the virtual clock, per tier: simulated round time, each tier's mean
latency and bytes uploaded per client, plain uploads against SecAgg and SecAgg+, with and without
a compressing tier optimization.

    python jobs/secure_cost.py [--config configs/ml100k.yaml] [--rounds 50] [--neighbours 8]
        [--optimizations none prune-1:4:16 quant-1:4:16] [--report PAGE.md]

Only the clock runs: each setting plans ``--rounds`` rounds (selection, latency draws, the
protocol's bytes, masks and message rounds) and trains none, so it takes seconds whatever the model.
The secure settings upload densely (one public shape); the plain reference uploads as the config
says and, for comparison, densely. Figures are means over the planned rounds of one seed.
"""

from __future__ import annotations

import sys
from pathlib import Path

if __package__ in (None, ""):
    sys.path[0] = str(Path(__file__).resolve().parents[1])

from dataclasses import dataclass
from typing import Optional, Sequence

import numpy as np

from configs import SimConfig
from configs.presets import OPTIMIZATION_PRESETS
from jobs.lib.cli import EXIT_BAD_INPUT, config_parser, first_paragraph, load_or_exit, run_guarded
from jobs.lib.job_page import config_dataset_title, job_command, write_page
from jobs.lib.results_page import ResultsPage, add_report_argument, markdown_table


@dataclass(frozen=True)
class Price:
    """One setting's means over its planned rounds: round seconds, and per tier (T,) the latency
    of its selected clients and the MB each uploads."""

    setting: str
    optimization: str
    round_s: float
    tier_latency_s: np.ndarray
    tier_upload_mb: np.ndarray


def settings(base: SimConfig, neighbours: int) -> dict[str, dict]:
    """The upload settings compared: as configured, dense, SecAgg, SecAgg+."""
    secagg = {"kind": "secagg"}
    return {
        f"plain ({base.fl.upload.kind})": {},
        "plain (dense)": {"upload": {"kind": "dense"}},
        "SecAgg": {"upload": {"kind": "dense"}, "secure_aggregation": secagg},
        f"SecAgg+ (k={neighbours})": {"upload": {"kind": "dense"},
                                      "secure_aggregation": {**secagg, "neighbours": neighbours}},
    }


def price(base: SimConfig, setting: str, fl_changes: dict, optimization: str, rounds: int) -> Price:
    """Plan ``rounds`` rounds of ``base`` under the setting and read the clock."""
    from cluster.fl.experiment import build

    data = base.model_dump(mode="json")
    data["fl"] = {**data["fl"], **fl_changes, "optimization": optimization, "rounds": rounds}
    exp = build(SimConfig.model_validate(data))
    server = exp.server_setup().server()
    tier_of_user, n_tiers = exp.fleet.tier_of_user, exp.fleet.tiers.n_tiers
    durations, latency, upload, counts = [], np.zeros(n_tiers), np.zeros(n_tiers), np.zeros(n_tiers)
    for _ in range(rounds):
        plan = server.plan_round()
        tiers = tier_of_user[plan.selected]
        durations.append(plan.duration_s)
        latency += np.bincount(tiers, weights=plan.latency_s, minlength=n_tiers)
        upload += np.bincount(tiers, weights=plan.upload_bytes, minlength=n_tiers)
        counts += np.bincount(tiers, minlength=n_tiers)
        server.close_unchanged(plan)
    per = np.maximum(counts, 1)
    return Price(setting, optimization, float(np.mean(durations)), latency / per, upload / per / 1e6)


def price_table(prices: list[Price], tier_names: tuple[str, ...]) -> str:
    """Rows per optimization and setting; each time also as × the plain (configured) setting's."""
    head = ["optimization", "setting", "round s", *[f"latency {t} s" for t in tier_names],
            *[f"upload {t} MB" for t in tier_names]]
    rows = []
    for optimization in dict.fromkeys(p.optimization for p in prices):
        group = [p for p in prices if p.optimization == optimization]
        reference = group[0]
        for p in group:
            times = [f"{v:.2f} ({v / r:.2f}×)" for v, r in zip(p.tier_latency_s, reference.tier_latency_s)]
            rows.append([optimization, p.setting, f"{p.round_s:.2f} ({p.round_s / reference.round_s:.2f}×)", *times,
                         *[f"{v:.3f}" for v in p.tier_upload_mb]])
    return markdown_table(head, rows)


def findings(prices: list[Price], tier_names: tuple[str, ...]) -> str:
    """What the table shows, computed from it."""
    lines = []
    by = {(p.optimization, p.setting): p for p in prices}
    secure = [p for p in prices if p.setting == "SecAgg"]
    for p in secure:
        dense = by[(p.optimization, "plain (dense)")]
        growth = p.tier_latency_s / dense.tier_latency_s
        worst = int(np.argmax(growth))
        lines.append(f"- {p.optimization}: SecAgg over dense plain uploads multiplies the {tier_names[worst]} tier's "
                     f"latency by {growth[worst]:.2f}× (others: "
                     + ", ".join(f"{t} {g:.2f}×" for t, g in zip(tier_names, growth) if t != tier_names[worst]) + ").")
    compressed = [p for p in secure if p.optimization != "none"]
    plain_none = by.get(("none", "SecAgg"))
    for p in compressed:
        if plain_none is not None:
            same = np.allclose(p.tier_upload_mb, plain_none.tier_upload_mb)
            lines.append(f"- {p.optimization} under SecAgg uploads "
                         f"{'the same bytes as' if same else 'other bytes than'} no optimization: secure uploads have "
                         "one public shape, so what compression saved is gone.")
    return "\n".join(lines)


def main(argv: Optional[Sequence[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = config_parser(first_paragraph(__doc__), default_config="configs/ml100k.yaml")
    parser.add_argument("--rounds", type=int, default=50,
                        help="rounds planned per setting (default: %(default)s)")
    parser.add_argument("--neighbours", type=int, default=8,
                        help="SecAgg+'s even neighbourhood size (default: %(default)s)")
    parser.add_argument("--optimizations", nargs="+", default=["none", "prune-1:4:16", "quant-1:4:16"],
                        help="tier optimization presets to price under each setting (default: %(default)s)")
    add_report_argument(parser)
    args = parser.parse_args(argv)
    base = load_or_exit(args)
    unknown = [o for o in args.optimizations if o not in OPTIMIZATION_PRESETS]
    if unknown or args.rounds < 1 or args.neighbours < 2 or args.neighbours % 2:
        problem = f"unknown optimization(s) {unknown}" if unknown else "--rounds ≥ 1 and an even --neighbours ≥ 2"
        print(f"error: {problem}", file=sys.stderr)
        return EXIT_BAD_INPUT
    tier_names = tuple(p.name for p in base.tiers.profiles)
    prices = [price(base, setting, changes, optimization, args.rounds)
              for optimization in args.optimizations for setting, changes in settings(base, args.neighbours).items()]
    table = price_table(prices, tier_names)
    print(table)
    print(findings(prices, tier_names))
    if args.report:
        page = ResultsPage(
            title=f"What secure aggregation costs each tier on {config_dataset_title(base)}",
            command=job_command(__file__, argv), seeds=[base.seed],
            intro=(f"{base.model.kind}, {base.fl.clients_per_round} clients a round, {args.rounds} rounds planned per "
                   "setting on the virtual clock (no training: the clock alone prices the protocol); means over "
                   "the rounds, one seed. Latency is each tier's selected clients' simulated seconds, × the plain "
                   "configured setting's."))
        page.add("Price per tier", table)
        page.add("What the numbers show", findings(prices, tier_names))
        write_page(page, args.report)
    return 0


if __name__ == "__main__":
    sys.exit(run_guarded(main))
