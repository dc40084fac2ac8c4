"""Does CEAG mitigate what the tier-aware optimizations break? Each optimization runs without and
with CEAG's constraints (ψ_t ≤ ε per tier), against the unoptimized reference, on train and held-out data.

    python jobs/ceag_compare.py [--config configs/rf2_dlrm_ml100k.yaml]
        [--mappings hetero-vhigh hetero-high] [--optimizations exclude-lo channel-1:4:16 prune-1:4:16 quant-1:4:16]
        [--epsilons 0.01 0.02] [--dual-lr 2.0] [--buffer-size 2000] [--measure accuracy|pairwise]
        [--proxy loss|pairwise_logistic] [--seeds 0] [--out runs/ceag-compare-dlrm] [--report PAGE.md]

Two phases of grid cells (``jobs/lib/grid.py``: Ray tasks, resumable): first the reference (no
optimization) and every optimization alone; then every optimization with CEAG, whose reference
table A_t(β_0) is the first phase's per-tier train accuracy of the same mapping and seed.
Outputs: cells.parquet, rounds.parquet (λ and ψ per round), ceag.parquet (MDAC, max ψ,
overall AUC change, simulated time; train and held-out; ψ on the measure CEAG bounds), ceag.md
and multipliers.png; with ``--report``, a results page of them. An NCF config (``--config
configs/ml100k.yaml --measure pairwise``) is compared on held-out HR@10 and the train pair rate.
"""

from __future__ import annotations

import sys
from pathlib import Path

if __package__ in (None, ""):
    sys.path[0] = str(Path(__file__).resolve().parents[1])

from collections.abc import Sequence
from typing import Optional

import pandas as pd
import pyarrow as pa

from cluster.data.parquet_io import write_table_atomic
from cluster.fairness.matrix import CELL_KEYS, REFERENCE, cell_measures, excess_gaps
from configs import SimConfig
from configs.presets import OPTIMIZATION_PRESETS
from jobs.lib.ceag_report import CEAGGrid, ceag_markdown, ceag_page, plot_multipliers
from jobs.lib.cli import EXIT_BAD_INPUT, config_parser, load_or_exit, run_guarded, first_paragraph
from jobs.lib.grid import add_grid_arguments, cell, grid_folder, run_cells
from jobs.lib.job_page import config_dataset_title, grid_setting, job_command, write_page
from jobs.lib.outputs import write_text_atomic
from jobs.lib.results_page import add_report_argument
from jobs.lib.rf2_report import RunDescription
from jobs.rf2_matrix import cell_config

DEFAULT_OPTIMIZATIONS = ("exclude-lo", "channel-1:4:16", "prune-1:4:16", "quant-1:4:16")


def ceag_label(optimization: str, epsilon: float) -> str:
    return f"{optimization}+ceag{epsilon:g}"


def with_ceag(cfg: SimConfig, epsilon: float, dual_lr: float, buffer_size: int, reference: dict[str, float],
              measure: str = "accuracy", proxy: str = "loss") -> SimConfig:
    data = cfg.model_dump(mode="json")
    data["fl"]["fairness"] = {"kind": "ceag", "measure": measure, "proxy": proxy, "epsilon": epsilon,
                              "dual_lr": dual_lr, "buffer_size": buffer_size, "reference_accuracy": reference}
    return SimConfig.model_validate(data)


# The per-tier columns ψ is computed on, for each measure CEAG can bound: (train, held-out). Pair
# rates are recorded on the train split only, so a pairwise ψ has no held-out column.
PSI_COLUMNS = {"accuracy": ("acc_train", "acc"), "pairwise": ("pair_train", None)}


def unchanged(rows: pd.DataFrame, tiers: tuple[str, ...], column: str) -> pd.DataFrame:
    """Per cell: whether ``column`` equals the reference cell's (same model, mapping, seed) in
    every tier and overall. ψ is then exactly 0 whatever the optimization did: the measure did
    not move at all, which is no evidence that the tiers kept their gaps. A click model that
    predicts no click anywhere (young, or on a tiny world) has the same accuracy in every run."""
    out = []
    for key, group in rows.groupby(CELL_KEYS, sort=True):
        by_config = {config: part.set_index("tier")[column] for config, part in group.groupby("configuration")}
        if REFERENCE not in by_config:
            continue
        ref = by_config[REFERENCE]
        for config, values in by_config.items():
            same = config != REFERENCE and all(values[t] == ref[t] for t in (*tiers, "all"))
            out.append({**dict(zip(CELL_KEYS, key)), "configuration": config, "unchanged": bool(same)})
    return pd.DataFrame(out)


def mdac_measures(rows: pd.DataFrame) -> tuple[str, str]:
    """The (held-out, train) measures MDAC is read from: AUC on both splits for a click model,
    RF²'s measure; for NCF, HR@10 held out and the within-client pair rate on train (train has
    no ranking over the catalogue)."""
    return ("auc", "auc_train") if "auc" in rows.columns else ("hr10", "pair_train")


def measure(rows: pd.DataFrame, tiers: tuple[str, ...], constrained: str = "accuracy") -> pd.DataFrame:
    """Per cell: held-out and train MDAC (``mdac_measures``), max ψ on the ``constrained`` measure
    (and whether that measure did not move at all against the reference, so ψ is 0 by
    construction), overall change of the held-out measure, time."""
    keys = ["model", "mapping", "seed", "configuration"]
    held_out, train_measure = mdac_measures(rows)
    test = cell_measures(rows, tiers, held_out)[[*keys, held_out, "change_all", "mdac", "sim_time_s", "speedup"]]
    train = cell_measures(rows, tiers, train_measure)[[*keys, "change_all", "mdac"]].rename(
        columns={"change_all": "change_all_train", "mdac": "mdac_train"})
    train_column, test_column = PSI_COLUMNS[constrained]
    psi_train = excess_gaps(rows, tiers, train_column).rename(columns=lambda c: c if c in keys else f"{c}_train")
    out = test.merge(train, on=keys).merge(psi_train, on=keys)
    out = out.merge(unchanged(rows, tiers, train_column).rename(columns={"unchanged": "psi_train_unchanged"}), on=keys)
    if test_column is None:
        out["max_psi_test"] = float("nan")
        out["psi_test_unchanged"] = False
    else:
        psi_test = excess_gaps(rows, tiers, test_column).rename(columns=lambda c: c if c in keys else f"{c}_test")
        out = out.merge(psi_test, on=keys)
        out = out.merge(unchanged(rows, tiers, test_column).rename(columns={"unchanged": "psi_test_unchanged"}),
                        on=keys)
    split = out["configuration"].str.partition("+ceag")
    out["optimization"] = split[0]
    out["epsilon"] = pd.to_numeric(split[2].where(split[2] != ""), errors="coerce")
    return out


def parse_args(argv: Optional[Sequence[str]]):
    parser = config_parser(first_paragraph(__doc__), default_config="configs/rf2_dlrm_ml100k.yaml")
    parser.add_argument("--mappings", nargs="+", default=["hetero-vhigh", "hetero-high"],
                        help="tier mappings, any of RF²'s presets random, hetero-vlow, hetero-low, hetero-mid, "
                             "hetero-high, hetero-vhigh (default: %(default)s)")
    parser.add_argument("--optimizations", nargs="+", default=list(DEFAULT_OPTIMIZATIONS),
                        help="tier-aware optimization presets, each run without and with CEAG (default: %(default)s; "
                             f"any of: {', '.join(name for name in OPTIMIZATION_PRESETS if name != 'none')})")
    parser.add_argument("--epsilons", nargs="+", type=float, default=[0.01, 0.02],
                        help="ε, the excess gap each tier may keep (one CEAG run per value; default: %(default)s)")
    parser.add_argument("--dual-lr", type=float, default=2.0, help="η_λ, the multipliers' step (default: %(default)s)")
    parser.add_argument("--buffer-size", type=int, default=2000,
                        help="samples (or pairs) per tier's replay buffer that ψ is estimated from (default: %(default)s)")
    parser.add_argument("--measure", choices=["accuracy", "pairwise"], default="accuracy",
                        help="what CEAG bounds: per-sample accuracy, or pairwise ranking inside each client's samples")
    parser.add_argument("--proxy", choices=["loss", "pairwise_logistic"], default="loss",
                        help="the primal step's stand-in for ψ: the BCE loss gap (re-weighted FedAvg), or the "
                             "pairwise logistic loss gap (needs --measure pairwise)")
    add_grid_arguments(parser, "ceag-compare-<model>")
    add_report_argument(parser)
    return parser.parse_args(argv)


def input_error(args, base) -> Optional[str]:
    """What is wrong with the arguments or the base config, or None."""
    unknown = [o for o in args.optimizations if o not in OPTIMIZATION_PRESETS or o == "none"]
    if unknown:
        return f"unknown optimization(s) {unknown}; known: {', '.join(OPTIMIZATION_PRESETS)}"
    if base.fl.overselect > 0 or base.fl.fairness.kind != "none":
        return "the base config must have fl.overselect 0 and no fl.fairness"
    if not base.model.is_click and (args.measure, args.proxy) != ("pairwise", "loss"):
        return (f"CEAG on an NCF model ({base.model.kind}) bounds the pairwise measure through the loss proxy: "
                "pass --measure pairwise (and no --proxy)")
    if any(e < 0 for e in args.epsilons) or args.dual_lr <= 0 or args.buffer_size <= 0:
        return "epsilons must be >= 0, --dual-lr and --buffer-size > 0"
    if args.proxy == "pairwise_logistic" and args.measure != "pairwise":
        return "--proxy pairwise_logistic is the differentiable form of --measure pairwise; pass both"
    return None


def run_grid(args, base, out, tiers: tuple[str, ...]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The unconstrained cells first (each mapping and seed's 'none' cell is CEAG's reference),
    then every optimization again under each ε."""
    plain = [cell(cell_config(base, mapping, optimization, seed), optimization, out)
             for seed in args.seeds for mapping in args.mappings for optimization in ["none", *args.optimizations]]
    rows, rounds = run_cells(plain, args.parallel, args.address)
    constrained = []
    for done in plain:
        if done.label == "none":
            continue
        ref = rows[(rows["mapping"] == done.cfg.tier_mapping.mapping) & (rows["seed"] == done.cfg.seed)
                   & (rows["configuration"] == "none")].set_index("tier")
        key = "pair_train" if args.measure == "pairwise" else "acc_train"
        reference = {t: float(ref.loc[t, key]) for t in tiers}
        constrained += [cell(with_ceag(done.cfg, epsilon, args.dual_lr, args.buffer_size, reference, args.measure,
                                       args.proxy), ceag_label(done.label, epsilon), out) for epsilon in args.epsilons]
    more_rows, more_rounds = run_cells(constrained, args.parallel, args.address)
    return pd.concat([rows, more_rows], ignore_index=True), pd.concat([rounds, more_rounds], ignore_index=True)


def write_outputs(args, rows: pd.DataFrame, rounds: pd.DataFrame, out, tiers: tuple[str, ...]) -> pd.DataFrame:
    write_table_atomic(pa.Table.from_pandas(rows, preserve_index=False), out / "cells.parquet")
    write_table_atomic(pa.Table.from_pandas(rounds, preserve_index=False), out / "rounds.parquet")
    table = measure(rows, tiers, args.measure)
    write_table_atomic(pa.Table.from_pandas(table, preserve_index=False), out / "ceag.parquet")
    write_text_atomic(out / "ceag.md", ceag_markdown(table, args.optimizations, args.epsilons, args.measure))
    plot_multipliers(rounds, tiers, out / "multipliers.png")
    return table


def main(argv: Optional[Sequence[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    base = load_or_exit(args)
    problem = input_error(args, base)
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        return EXIT_BAD_INPUT
    from cluster.world import build_world

    build_world(base)  # bad data fails here, before any task starts
    out = grid_folder(args, base, f"ceag-compare-{base.model.kind}")
    tiers = tuple(p.name for p in base.tiers.profiles)
    rows, rounds = run_grid(args, base, out, tiers)
    table = write_outputs(args, rows, rounds, out, tiers)
    print(ceag_markdown(table, args.optimizations, args.epsilons, args.measure))
    print(f"wrote {out}")
    if args.report:
        grid = CEAGGrid(args.optimizations, args.epsilons, constrained=args.measure, proxy=args.proxy,
                        dual_lr=args.dual_lr, buffer_size=args.buffer_size)
        run = RunDescription(job_command(__file__, argv), args.seeds, config_dataset_title(base), grid_setting(base))
        write_page(ceag_page(table, rounds, tiers, grid=grid, run=run), args.report)
    return 0


if __name__ == "__main__":
    sys.exit(run_guarded(main))
