"""Measure what asynchronous aggregation does to each device tier: synchronous rounds (with
over-selection and the config's deadline) against FedBuff, and FedBuff with its tier-aware
staleness weight, at equal simulated time — each tier's share of the applied updates and of their
weight, its staleness, its held-out quality, and MDAC against the synchronous run.

    python jobs/async_tiers.py [--config configs/ml100k.yaml] [--seeds 0 1 2] [--mapping hetero-vhigh]
        [--overselect 0.3] [--deadline S] [--concurrency 100] [--buffer-size 10] [--out LOCATION] [--report PAGE.md]

Each synchronous cell runs the config's rounds; each asynchronous cell of the same seed then trains
until the virtual clock reaches the synchronous cell's time. Cells are Ray tasks (``jobs/lib/grid.py``),
resumable. Skew is the per-capita ratio of the most- to the least-heard tier (share of updates over share
of the eligible clients; or the share of its FedAvg weight a tier keeps once staleness is discounted): 1
when every tier is heard alike.
"""

from __future__ import annotations

import sys
from pathlib import Path

if __package__ in (None, ""):
    sys.path[0] = str(Path(__file__).resolve().parents[1])

from functools import partial
from typing import Optional, Sequence

import numpy as np
import pandas as pd
import pyarrow as pa

from cluster.data.parquet_io import write_table_atomic
from cluster.fairness.matrix import REFERENCE, cell_measures, mean_over_seeds
from configs import SimConfig
from jobs.lib.async_cells import async_tier_cell
from jobs.lib.cli import EXIT_BAD_INPUT, config_parser, first_paragraph, load_or_exit, run_guarded
from jobs.lib.grid import add_grid_arguments, cell, grid_folder, run_cells
from jobs.lib.job_page import config_dataset_title, job_command, pm, write_page
from jobs.lib.results_page import ResultsPage, add_report_argument, markdown_table
from jobs.rf2_matrix import MAPPINGS

ARMS = {REFERENCE: "sync (over-selection, deadline)", "async": "async (FedBuff)",
        "async-tier-staleness": "async, tier-aware staleness"}
GOALS = {"weight skew cut": 0.5, "MDAC cut": 0.3}
TITLES = {"auc": "AUC", "hr10": "HR@10"}


def arm_config(base: SimConfig, arm: str, seed: int, mapping: str, sync: tuple[float, Optional[float]],
               concurrency: int, buffer_size: int) -> SimConfig:
    """The arm's config: ``sync`` (over-selection, deadline) for the synchronous arm; the
    asynchronous arms have neither."""
    data = base.model_dump(mode="json")
    data["seed"] = seed
    data["tier_mapping"] = {**data["tier_mapping"], "mapping": mapping, "alpha": None}
    if arm == REFERENCE:
        overselect, deadline = sync
        data["fl"] = {**data["fl"], "overselect": overselect, "deadline_s": deadline}
    else:
        mode = {"kind": "async", "concurrency": concurrency, "buffer_size": buffer_size,
                "tier_staleness": arm == "async-tier-staleness"}
        # Steps are capped far above what the time budget lets a run take.
        data["fl"] = {**data["fl"], "overselect": 0.0, "deadline_s": None, "mode": mode, "rounds": 10**7}
    return SimConfig.model_validate(data)


def per_seed(rows: pd.DataFrame, tiers: tuple[str, ...]) -> pd.DataFrame:
    """Per arm and seed: MDAC and per-tier change against the synchronous run, and the skews."""
    metric = rows["metric"].iloc[0]
    measures = cell_measures(rows, tiers, metric)
    skews = []
    for (arm, seed), part in rows[rows["tier"] != "all"].groupby(["configuration", "seed"]):
        per_capita = part.set_index("tier")
        entry = {"configuration": arm, "seed": seed, "steps": float(part["steps"].iloc[0]),
                 "updates": float(part["updates"].iloc[0])}
        ratio = per_capita["update_share"] / per_capita["population_share"]
        entry["update_skew"] = float(ratio.max() / ratio.min()) if ratio.min() > 0 else np.nan
        kept = per_capita["kept_weight"]
        entry["weight_skew"] = float(kept.max() / kept.min()) if kept.min() > 0 else np.nan
        entry.update({f"update_share_{t}": float(per_capita.loc[t, "update_share"]) for t in tiers})
        entry.update({f"kept_weight_{t}": float(per_capita.loc[t, "kept_weight"]) for t in tiers})
        entry["finite"] = float(part["finite"].all())
        entry.update({f"staleness_{t}": float(per_capita.loc[t, "staleness"]) for t in tiers})
        entry.update({f"{metric}_{t}": float(per_capita.loc[t, metric]) for t in tiers})
        skews.append(entry)
    return measures.merge(pd.DataFrame(skews), on=["configuration", "seed"])


EXIT_GOAL_MISSED = 3


def goal_lines(summary: pd.DataFrame) -> list[str]:
    """The mitigation against plain FedBuff, as cuts of the excess weight skew and of MDAC."""
    return goals(summary)[0]


def goals(summary: pd.DataFrame) -> tuple[list[str], list[str]]:
    """The page's lines on the mitigation against plain FedBuff, and the goals (``GOALS``) it
    missed; a goal with nothing to cut counts as missed."""
    by = summary.set_index("configuration")
    if not {"async", "async-tier-staleness"} <= set(by.index):
        return [], list(GOALS)
    plain, mitigated = by.loc["async"], by.loc["async-tier-staleness"]
    lines, missed = [], []
    for name, column, excess in (("weight skew cut", "weight_skew", 1.0), ("update skew cut", "update_skew", 1.0),
                                 ("MDAC cut", "mdac", 0.0)):
        before, after = plain[column] - excess, mitigated[column] - excess
        goal = GOALS.get(name)
        if not np.isfinite(before) or before <= 0:
            lines.append(f"- {name}: plain FedBuff has none to cut ({column} {plain[column]:.3f}).")
            missed += [name] if goal is not None else []
            continue
        cut = 1.0 - after / before
        if goal is not None and not cut >= goal:
            missed.append(name)
        verdict = "" if goal is None else (f" — goal ≥ {goal:.0%}: {'met' if cut >= goal else 'missed'}")
        lines.append(f"- {name}: {cut:.0%} ({column} {plain[column]:.3f} → {mitigated[column]:.3f}, means over "
                     f"{int(plain['seeds'])} seeds){verdict}.")
    lines.append("- Extra simulated time: none by construction — every arm trains for the synchronous run's time.")
    return lines, missed


def page(summary: pd.DataFrame, tiers: tuple[str, ...], metric: str, base: SimConfig, command: str,
         seeds: Sequence[int], setup: str) -> ResultsPage:
    result = ResultsPage(
        title=(f"What asynchronous aggregation does to each tier: {base.model.kind.upper()} on "
               f"{config_dataset_title(base)}"),
        command=command, seeds=list(seeds),
        intro=(f"{setup} Means over seeds with 95 % t-intervals (one seed: no interval). Change and MDAC are "
               f"against the synchronous run of the same seed; skew is the per-capita ratio of the most- to the "
               "least-heard tier (1: every tier heard in proportion to its size)."))
    rows = []
    for arm, title in ARMS.items():
        hit = summary[summary["configuration"] == arm]
        if hit.empty:
            continue
        r = hit.iloc[0]
        rows.append([title, *[pm(r[f"{metric}_{t}"], r[f"{metric}_{t}_ci95"]) for t in tiers],
                     pm(r["mdac"] * 100, r["mdac_ci95"] * 100, ".1f", unit=" %"), f"{r['sim_time_s']:.0f}",
                     f"{r['steps']:.0f}", f"{r['updates']:.0f}"])
    title = TITLES.get(metric, metric)
    result.add(f"Held-out {title} per tier", markdown_table(
        ["arm", *[f"{title} {t}" for t in tiers], "MDAC", "sim s", "steps", "updates"], rows))
    heard = []
    for arm, title in ARMS.items():
        hit = summary[summary["configuration"] == arm]
        if hit.empty:
            continue
        r = hit.iloc[0]
        heard.append([title, *[f"{r[f'update_share_{t}']:.3f}" for t in tiers],
                      *[f"{r[f'kept_weight_{t}']:.2f}" for t in tiers], *[f"{r[f'staleness_{t}']:.1f}" for t in tiers],
                      f"{r['update_skew']:.2f}", f"{r['weight_skew']:.2f}"])
    result.add("Who is heard", "Each tier's share of the applied updates; the share of its FedAvg weight it keeps "
               "once staleness is discounted (1: nothing discounted); the mean staleness of its updates in server "
               "steps. Update skew: the per-capita update share of the most- over the least-heard tier; weight "
               "skew: the same for the kept weight.\n\n" + markdown_table(
        ["arm", *[f"updates {t}" for t in tiers], *[f"kept weight {t}" for t in tiers],
         *[f"staleness {t}" for t in tiers], "update skew", "weight skew"], heard))
    diverged = summary[summary["finite"] < 1]["configuration"].tolist()
    if diverged:
        result.add("Diverged", "A run of these arms ended with non-finite parameters (its quality is that of a "
                   f"broken model): {', '.join(ARMS[a] for a in diverged)}.")
    result.add("The mitigation against plain FedBuff", "\n".join(goal_lines(summary)))
    return result


def main(argv: Optional[Sequence[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = config_parser(first_paragraph(__doc__), default_config="configs/ml100k.yaml")
    parser.add_argument("--mapping", default="hetero-vhigh", choices=MAPPINGS,
                        help="tier mapping (default: %(default)s)")
    parser.add_argument("--overselect", type=float, default=0.3,
                        help="the synchronous arm's over-selection x (default: %(default)s)")
    parser.add_argument("--deadline", type=float,
                        help="the synchronous arm's deadline in simulated seconds (default: the config's)")
    parser.add_argument("--concurrency", type=int, help="C, devices in flight (default: fl.clients_per_round)")
    parser.add_argument("--buffer-size", type=int, help="K, updates per server step (default: C / 10)")
    add_grid_arguments(parser, "async-tiers-<model>")
    parser.add_argument("--check", action="store_true",
                        help=f"exit {EXIT_GOAL_MISSED} when the mitigation misses a goal (GOALS: the weight "
                             "skew's excess cut by ≥ 50 %%, MDAC against the synchronous run cut by ≥ 30 %%)")
    add_report_argument(parser)
    args = parser.parse_args(argv)
    base = load_or_exit(args)
    concurrency = args.concurrency or base.fl.clients_per_round
    buffer_size = args.buffer_size or max(1, concurrency // 10)
    deadline = args.deadline if args.deadline is not None else base.fl.deadline_s
    if (args.overselect < 0 or concurrency < 1 or buffer_size < 1 or base.fl.mode.kind != "sync"
            or (deadline is not None and deadline <= 0)):
        print("error: --overselect ≥ 0, --deadline > 0, --concurrency and --buffer-size ≥ 1, and a synchronous "
              "base config", file=sys.stderr)
        return EXIT_BAD_INPUT
    out = grid_folder(args, base, f"async-tiers-{base.model.kind}")
    configs = {(arm, seed): arm_config(base, arm, seed, args.mapping, (args.overselect, deadline), concurrency,
                                       buffer_size)
               for seed in args.seeds for arm in ARMS}
    sync_rows, _ = run_cells([cell(configs[(REFERENCE, s)], REFERENCE, out) for s in args.seeds], args.parallel,
                             args.address, cell_fn=async_tier_cell)
    budgets = {int(s): float(t) for s, t in sync_rows[sync_rows["tier"] == "all"][["seed", "sim_time_s"]].values}
    async_cells = [cell(configs[(arm, s)], arm, out) for s in args.seeds for arm in ARMS if arm != REFERENCE]
    async_rows, _ = run_cells(async_cells, args.parallel, args.address,
                              cell_fn=partial(async_tier_cell, budgets=budgets))
    rows = pd.concat([sync_rows, async_rows], ignore_index=True)
    write_table_atomic(pa.Table.from_pandas(rows, preserve_index=False), out / "cells.parquet")
    tiers = tuple(p.name for p in base.tiers.profiles)
    summary = mean_over_seeds(per_seed(rows, tiers))
    write_table_atomic(pa.Table.from_pandas(summary, preserve_index=False), out / "summary.parquet")
    metric = rows["metric"].iloc[0]
    setup = (f"{base.fl.clients_per_round} clients a round (over-selection {args.overselect:g}, deadline "
             f"{deadline if deadline is not None else 'none'} s) against C = {concurrency} devices in flight and "
             f"K = {buffer_size} updates a server step, mapping {args.mapping}.")
    result = page(summary, tiers, metric, base, job_command(__file__, argv), args.seeds, setup)
    print(result.markdown("."))
    if args.report:
        write_page(result, args.report)
    missed = goals(summary)[1]
    if args.check and missed:
        print(f"goals missed: {', '.join(missed)}", file=sys.stderr)
        return EXIT_GOAL_MISSED
    return 0


if __name__ == "__main__":
    sys.exit(run_guarded(main))
