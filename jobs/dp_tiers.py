"""Measure what user-level differential privacy costs each device tier: every tier-aware
optimization without DP and under central DP at each target ε, per-tier quality (HR@10 for NCF
models, AUC for click models), MDAC, and whether the mitigations still cut MDAC under DP.

    python jobs/dp_tiers.py [--config configs/ml100k.yaml] [--epsilons 1 4 8] [--clip-norm 1.0] [--delta D]
        [--configurations none prune-1:4:16 ...] [--mapping hetero-vhigh] [--seeds 0 1 2]
        [--out runs/dp-tiers-<model>] [--parallel 2] [--report PAGE.md]

Each cell (privacy × configuration × seed) is one Ray task running the aggregator's round loop in
process (``jobs/lib/grid.py``; resumable: finished cells are read back on a rerun). Central DP is
set per cell with ``target_epsilon``, so the noise is solved for the cell's planned rounds and
sampling rate; δ is the config's default, 1 / (10 × clients), unless ``--delta`` names one. A
cell whose config is refused (a combination the privacy mechanism does not cover, or an
optimization the model has no use for) is listed with the reason instead of run.

Measures, each a mean over seeds with its 95 % t-interval: per tier the relative change of every
configuration against ``none`` under the same privacy, and MDAC; DP's own cost, each tier's
change of (configuration, ε) against the same configuration without DP; and for each mitigation
(``prune-1:4:16-rescaled`` against ``prune-1:4:16``, ``channel-lo-1:16`` against ``exclude-lo``)
whether its MDAC is below its counterpart's under each ε. Outputs: cells.parquet, rounds.parquet,
measures.parquet, dp_cost.parquet, refused.parquet, dp_tiers.md, mdac.png and dp_cost.png; with
``--report``, a results page of them.
"""

from __future__ import annotations

import sys
from pathlib import Path

if __package__ in (None, ""):
    sys.path[0] = str(Path(__file__).resolve().parents[1])

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Optional

import numpy as np
import pandas as pd
import pyarrow as pa
from pydantic import ValidationError

from cluster.data.parquet_io import write_table_atomic
from cluster.fairness.matrix import REFERENCE, cell_measures, mean_over_seeds
from cluster.storage import Storage
from configs import SimConfig, config_hash
from configs.presets import OPTIMIZATION_PRESETS
from jobs.lib.cli import EXIT_BAD_INPUT, config_parser, first_paragraph, load_or_exit, run_guarded
from jobs.lib.grid import Cell, add_grid_arguments, cell, grid_folder, headline_results, run_cells
from jobs.lib.job_page import config_dataset_title, grid_setting, job_command, write_page
from jobs.lib.results_page import add_report_argument
from jobs.lib.rf2_report import RunDescription
from jobs.rf2_matrix import MAPPINGS

if TYPE_CHECKING:
    from jobs.lib.dp_report import DPTable

DEFAULT_CONFIGURATIONS = ("none", "prune-1:4:16", "channel-1:4:16", "exclude-lo", "prune-1:4:16-rescaled",
                          "channel-lo-1:16")
DEFAULT_EPSILONS = (1.0, 4.0, 8.0)
NO_PRIVACY = "none"


def privacy_label(epsilon: Optional[float]) -> str:
    """The privacy axis's name of a cell: ``none``, or ``eps<ε>`` for central DP at target ε."""
    return NO_PRIVACY if epsilon is None else f"eps{epsilon:g}"


@dataclass(frozen=True)
class PrivacySetting:
    """Central DP as every private cell runs it, but for the target ε: C, and δ (None: the
    config's default, 1 / (10 × clients))."""

    clip_norm: float
    delta: Optional[float]

    def config(self, epsilon: Optional[float]) -> dict:
        if epsilon is None:
            return {"kind": "none"}
        privacy = {"kind": "central_dp", "clip_norm": self.clip_norm, "target_epsilon": epsilon}
        if self.delta is not None:
            privacy["delta"] = self.delta
        return privacy


def cell_config(base: SimConfig, mapping: str, configuration: str, privacy: dict, seed: int) -> SimConfig:
    """The base config with the cell's tier mapping, optimization preset, privacy and seed;
    raises pydantic's ValidationError when the combination is refused."""
    data = base.model_dump(mode="json")
    data["seed"] = seed
    data["tier_mapping"] = {**data["tier_mapping"], "mapping": mapping, "alpha": None}
    data["fl"] = {**data["fl"], "optimization": configuration, "privacy": privacy}
    return SimConfig.model_validate(data)


def refusal(exc: ValidationError) -> str:
    """A refused config's reasons, as the schema words them."""
    return "; ".join(str(e["msg"]).removeprefix("Value error, ") for e in exc.errors())


@dataclass(frozen=True)
class Axes:
    """The cells of the table: every configuration without DP and at each target ε, once per seed."""

    configurations: Sequence[str]
    epsilons: Sequence[float]
    seeds: Sequence[int]
    mapping: str


@dataclass(frozen=True)
class Planned:
    """The cells to run, what each one's config hash stands for on the privacy axis, and the
    cells refused before running (one row per configuration, privacy and seed, with the reason)."""

    cells: list[Cell]
    privacy_of: dict[str, tuple[str, float]]
    refused: pd.DataFrame


def plan(base: SimConfig, axes: Axes, setting: PrivacySetting, out: Storage) -> Planned:
    """Every cell's config, validated here so a refused combination is recorded with its reason
    and the rest of the table still runs."""
    cells, privacy_of, refused = [], {}, []
    for seed in axes.seeds:
        for epsilon in (None, *axes.epsilons):
            label = privacy_label(epsilon)
            target = np.nan if epsilon is None else float(epsilon)
            for configuration in axes.configurations:
                try:
                    cfg = cell_config(base, axes.mapping, configuration, setting.config(epsilon), seed)
                except ValidationError as exc:
                    refused.append({"model": base.model.kind, "mapping": axes.mapping, "configuration": configuration,
                                    "privacy": label, "target_epsilon": target, "seed": seed,
                                    "reason": refusal(exc)})
                    continue
                safe = configuration.replace(":", "-").replace("/", "-")
                name = f"{cfg.model.kind}__{axes.mapping}__{safe}__{label}__s{seed}.parquet"
                cells.append(cell(cfg, configuration, out, name))
                privacy_of[config_hash(cfg)] = (label, target)
    columns = ["model", "mapping", "configuration", "privacy", "target_epsilon", "seed", "reason"]
    return Planned(cells, privacy_of, pd.DataFrame(refused, columns=columns))


def with_privacy(frame: pd.DataFrame, privacy_of: dict[str, tuple[str, float]]) -> pd.DataFrame:
    """``frame`` (rows carrying ``config_hash``) with the privacy axis's label and target ε."""
    frame = frame.copy()
    frame["privacy"] = frame["config_hash"].map(lambda h: privacy_of[h][0])
    frame["target_epsilon"] = frame["config_hash"].map(lambda h: privacy_of[h][1]).astype(np.float64)
    return frame


PER_CELL = ["dp_epsilon", "dp_delta", "dp_noise_multiplier", "dp_clipped"]
KEYS = ["model", "mapping", "seed", "configuration"]


def _per_tier_values(rows: pd.DataFrame, metric: str) -> pd.DataFrame:
    """One row per cell: the metric of every tier (``<metric>_<tier>``) and the privacy fields."""
    wide = rows.pivot_table(index=KEYS, columns="tier", values=metric, aggfunc="first")
    wide.columns = [f"{metric}_{t}" for t in wide.columns]
    overall = rows[rows["tier"] == "all"].set_index(KEYS)[PER_CELL]
    return wide.drop(columns=[f"{metric}_all"]).join(overall).reset_index()


def optimization_measures(rows: pd.DataFrame, tiers: tuple[str, ...], metric: str) -> pd.DataFrame:
    """Under each privacy level, every configuration against ``none`` of the same privacy, mapping
    and seed (``cell_measures``: per-tier change, MDAC, speed-up), with each tier's metric and the
    cell's ε, δ, σ and clipped share; then the mean over seeds with 95 % half-widths."""
    out = []
    for (privacy, target), part in rows.groupby(["privacy", "target_epsilon"], sort=False, dropna=False):
        per_seed = cell_measures(part, tiers, metric)
        if per_seed.empty:
            continue
        per_seed = per_seed.merge(_per_tier_values(part, metric), on=KEYS, how="left")
        mean = mean_over_seeds(per_seed, tiers)
        mean.insert(2, "privacy", privacy)
        mean.insert(3, "target_epsilon", target)
        out.append(mean)
    return pd.concat(out, ignore_index=True) if out else pd.DataFrame()


def dp_cost(rows: pd.DataFrame, tiers: tuple[str, ...], metric: str) -> pd.DataFrame:
    """DP's own cost: for each configuration, every privacy level against the same
    configuration without DP (same mapping and seed): per-tier change and MDAC over seeds."""
    out = []
    for configuration, part in rows.groupby("configuration", sort=False):
        targets = dict(zip(part["privacy"], part["target_epsilon"]))
        relabelled = part.assign(configuration=part["privacy"])  # the privacy axis takes the reference's place
        per_seed = cell_measures(relabelled, tiers, metric)
        if per_seed.empty:
            continue
        mean = mean_over_seeds(per_seed, tiers).rename(columns={"configuration": "privacy"})
        mean.insert(2, "configuration", configuration)
        mean.insert(4, "target_epsilon", mean["privacy"].map(targets).astype(np.float64))
        out.append(mean[mean["privacy"] != REFERENCE])
    return pd.concat(out, ignore_index=True) if out else pd.DataFrame()


def _privacy_order(frame: pd.DataFrame) -> pd.DataFrame:
    """No DP first, then by ascending target ε."""
    return frame.sort_values("target_epsilon", na_position="first", kind="stable")


def parse_args(argv: Sequence[str]):
    parser = config_parser(first_paragraph(__doc__), default_config="configs/ml100k.yaml")
    names = ", ".join(OPTIMIZATION_PRESETS)
    parser.add_argument("--configurations", nargs="+", default=list(DEFAULT_CONFIGURATIONS), metavar="PRESET",
                        help="optimization presets (configs/presets.py); 'none' is always added as the reference "
                             f"(default: {' '.join(DEFAULT_CONFIGURATIONS)}; any of: {names})")
    parser.add_argument("--epsilons", nargs="+", type=float, default=list(DEFAULT_EPSILONS), metavar="EPSILON",
                        help="target ε of central DP, one privacy level each beside no DP; the noise is solved so "
                             "that ε after fl.rounds rounds is at most the target (default: "
                             f"{' '.join(f'{e:g}' for e in DEFAULT_EPSILONS)})")
    parser.add_argument("--clip-norm", type=float, default=1.0,
                        help="C, the L2 norm each client's whole update is clipped to (default: %(default)s)")
    parser.add_argument("--delta", type=float,
                        help="δ of the guarantee (default: the config's, 1 / (10 × the number of clients))")
    parser.add_argument("--mapping", default="hetero-vhigh", choices=MAPPINGS, metavar="MAPPING",
                        help=f"tier mapping of every cell, one of {', '.join(MAPPINGS)} (default: %(default)s)")
    add_grid_arguments(parser, "dp-tiers-<model>")
    add_report_argument(parser)
    return parser.parse_args(argv)


def input_error(args, base: SimConfig) -> Optional[str]:
    """What is wrong with the arguments or the base config, or None."""
    unknown = [c for c in args.configurations if c not in OPTIMIZATION_PRESETS]
    if unknown:
        return f"unknown configuration(s) {unknown}; known: {', '.join(OPTIMIZATION_PRESETS)}"
    if base.fl.privacy.kind != "none":
        return (f"the base config sets fl.privacy (kind {base.fl.privacy.kind!r}); leave it out: the job sets it "
                "per cell")
    if base.fl.overselect > 0:
        return "fl.overselect must be 0 in the base config: over-selection is one of the configurations"
    if any(e <= 0 for e in args.epsilons):
        return f"--epsilons must all be > 0, got {args.epsilons}"
    if args.clip_norm <= 0:
        return f"--clip-norm must be > 0, got {args.clip_norm:g}"
    if args.delta is not None and not 0 < args.delta < 1:
        return f"--delta must lie in (0, 1), got {args.delta:g}"
    return None


def write_outputs(rows: pd.DataFrame, rounds: pd.DataFrame, refused: pd.DataFrame, out: Storage,
                  tiers: tuple[str, ...], configurations: Sequence[str]) -> "DPTable":
    from jobs.lib.dp_report import DPTable, dp_markdown, plot_dp_cost, plot_mdac
    from jobs.lib.outputs import write_text_atomic

    metric = str(rows["metric"].iloc[0])
    rows = rows.sort_values(["model", "mapping", "seed", "configuration", "tier"], kind="stable")
    write_table_atomic(pa.Table.from_pandas(rows, preserve_index=False), out / "cells.parquet")
    write_table_atomic(pa.Table.from_pandas(rounds, preserve_index=False), out / "rounds.parquet")
    write_table_atomic(pa.Table.from_pandas(refused, preserve_index=False), out / "refused.parquet")
    measures = _privacy_order(optimization_measures(rows, tiers, metric))
    cost = _privacy_order(dp_cost(rows, tiers, metric))
    write_table_atomic(pa.Table.from_pandas(measures, preserve_index=False), out / "measures.parquet")
    write_table_atomic(pa.Table.from_pandas(cost, preserve_index=False), out / "dp_cost.parquet")
    table = DPTable(measures, cost, refused, tiers, metric, tuple(configurations))
    write_text_atomic(out / "dp_tiers.md", dp_markdown(table))
    plot_mdac(table, out / "mdac.png")
    plot_dp_cost(table, out / "dp_cost.png")
    return table


def main(argv: Optional[Sequence[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    base = load_or_exit(args)
    problem = input_error(args, base)
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        return EXIT_BAD_INPUT
    configurations = ["none", *dict.fromkeys(c for c in args.configurations if c != "none")]
    epsilons = sorted(set(args.epsilons))
    out = grid_folder(args, base, f"dp-tiers-{base.model.kind}")
    planned = plan(base, Axes(configurations, epsilons, args.seeds, args.mapping),
                   PrivacySetting(args.clip_norm, args.delta), out)
    for _, r in planned.refused.drop_duplicates(["configuration", "privacy"]).iterrows():
        print(f"refused: {r['configuration']} under {r['privacy']}: {r['reason']}", file=sys.stderr)
    if not planned.cells:
        print("error: every cell's config was refused (reasons above)", file=sys.stderr)
        return EXIT_BAD_INPUT
    from cluster.world import build_world

    build_world(base)  # fills the data cache once, and bad data fails here, before any task starts
    rows, rounds = run_cells(planned.cells, args.parallel, args.address, cell_fn=headline_results)
    rows, rounds = with_privacy(rows, planned.privacy_of), with_privacy(rounds, planned.privacy_of)
    tiers = tuple(p.name for p in base.tiers.profiles)
    table = write_outputs(rows, rounds, planned.refused, out, tiers, configurations)
    from jobs.lib.dp_report import dp_markdown, dp_page

    print(dp_markdown(table))
    print(f"wrote {out}")
    if args.report:
        privacy = (f"Central DP: each client's update clipped to C = {args.clip_norm:g}, δ = "
                   + (f"{args.delta:g}" if args.delta is not None else "1 / (10 × clients)")
                   + f", σ solved for each target ε over the {base.fl.rounds} planned rounds.")
        run = RunDescription(job_command(__file__, argv), args.seeds, config_dataset_title(base),
                             f"{grid_setting(base)} {privacy}")
        write_page(dp_page(table, run=run, mapping=args.mapping), args.report)
    return 0


if __name__ == "__main__":
    sys.exit(run_guarded(main))
