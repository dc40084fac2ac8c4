"""Run RF²'s experiment matrix: every tier-aware optimization under every tier mapping, per-tier change
against no optimization (AUC for click models, HR@10 for NCF), MDAC, and what each buys in simulated time.

    python jobs/rf2_matrix.py [--config configs/rf2_dlrm_ml100k.yaml] [--set model.kind=din]
        [--configurations none prune-1:4:16 ...] [--mappings random hetero-vhigh ...] [--seeds 0 1]
        [--out runs/rf2-matrix-dlrm] [--parallel 2] [--plot-mapping hetero-vhigh] [--report PAGE.md]

Each cell (mapping × configuration × seed) is one Ray task running the aggregator's round loop
in process (``jobs/lib/grid.py``; bit-identical to an actor run of the same config), as many at once
as the cluster has CPUs (or ``--parallel``). A finished cell is written to ``<out>/cells/`` at
once and skipped when the job runs again with the same settings, so a killed matrix resumes.
Outputs: cells.parquet (AUC per cell and tier, held-out and train),
measures.parquet (relative change per tier, MDAC, speed-up), matrix.md, mdac.png (RF² Fig. 6)
and tier_change_<mapping>.png (RF² Fig. 8); with ``--report``, a results page of all of them.
"""

from __future__ import annotations

import sys
from pathlib import Path

if __package__ in (None, ""):
    sys.path[0] = str(Path(__file__).resolve().parents[1])

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Optional

import pandas as pd
import pyarrow as pa

from cluster.data.parquet_io import write_table_atomic
from cluster.fairness.matrix import cell_measures, excess_gaps, mean_over_seeds
from cluster.storage import Storage
from configs import SimConfig
from configs.presets import OPTIMIZATION_PRESETS, RF2_CONFIGURATIONS
from jobs.lib.cli import EXIT_BAD_INPUT, config_parser, load_or_exit, run_guarded, first_paragraph
from jobs.lib.grid import add_grid_arguments, cell, cell_results, grid_folder, headline_results, run_cells
from jobs.lib.job_page import config_dataset_title, grid_setting, job_command, write_page
from jobs.lib.results_page import add_report_argument
from jobs.lib.rf2_report import RunDescription, matrix_markdown, matrix_page, plot_mdac, plot_tier_change

MAPPINGS = ("random", "hetero-vlow", "hetero-low", "hetero-mid", "hetero-high", "hetero-vhigh")


def cell_config(base: SimConfig, mapping: str, configuration: str, seed: int) -> SimConfig:
    data = base.model_dump(mode="json")
    data["seed"] = seed
    data["tier_mapping"] = {**data["tier_mapping"], "mapping": mapping, "alpha": None}
    data["fl"] = {**data["fl"], "optimization": configuration}
    return SimConfig.model_validate(data)


def cfg_tiers(cfg: SimConfig) -> tuple[str, ...]:
    return tuple(p.name for p in cfg.tiers.profiles)


@dataclass(frozen=True)
class MatrixAxes:
    """The cells of the matrix: every configuration under every tier mapping, once per seed."""

    configurations: Sequence[str]
    mappings: Sequence[str]
    seeds: Sequence[int]


def run_matrix(base: SimConfig, axes: MatrixAxes, out: Storage, parallel: Optional[int], address: Optional[str],
               quiet: bool = False) -> pd.DataFrame:
    from cluster.world import build_world

    build_world(base)  # fills the data cache once, and bad data fails here, before any task starts
    cells = []
    for seed in axes.seeds:
        for mapping in axes.mappings:
            for configuration in axes.configurations:
                cfg = cell_config(base, mapping, configuration, seed)
                cells.append(cell(cfg, configuration, out))
    # Click models' cells also measure train AUC and the pairwise measure; any family's cells
    # measure its headline held-out measure (HR@10 for NCF).
    cell_fn = cell_results if base.model.is_click else headline_results
    rows, _ = run_cells(cells, parallel, address, quiet, cell_fn=cell_fn)
    return rows


def write_outputs(rows: pd.DataFrame, tiers: tuple[str, ...], out: Storage, plot_mapping: str) -> pd.DataFrame:
    rows = rows.sort_values(["model", "mapping", "seed", "configuration", "tier"], kind="stable")
    write_table_atomic(pa.Table.from_pandas(rows, preserve_index=False), out / "cells.parquet")
    click = "auc" in rows.columns  # click models: AUC, train AUC and the pairwise measure; NCF: HR@10
    per_seed = cell_measures(rows, tiers, "auc" if click else "hr10")
    if click:
        train = cell_measures(rows, tiers, "auc_train")
        per_seed = per_seed.merge(
            train[["model", "mapping", "seed", "configuration", "auc_train", "mdac", "change_all"]].rename(
                columns={"mdac": "mdac_train", "change_all": "change_all_train"}),
            on=["model", "mapping", "seed", "configuration"])
        # CEAG's ψ on the pairwise measure, so a mitigation's cells can be read against ψ ≤ ε too.
        psi = excess_gaps(rows, tiers, "pair_train")[["model", "mapping", "seed", "configuration", "max_psi"]]
        per_seed = per_seed.merge(psi.rename(columns={"max_psi": "max_psi_pair_train"}),
                                  on=["model", "mapping", "seed", "configuration"], how="left")
    measures = mean_over_seeds(per_seed, tiers)
    write_table_atomic(pa.Table.from_pandas(measures, preserve_index=False), out / "measures.parquet")
    from jobs.lib.outputs import write_text_atomic

    write_text_atomic(out / "matrix.md", matrix_markdown(measures, tiers, plot_mapping))
    plot_mdac(measures, out / "mdac.png")
    if plot_mapping in set(measures["mapping"]):
        plot_tier_change(measures, tiers, plot_mapping, out / f"tier_change_{plot_mapping}.png")
    return measures


def main(argv: Optional[Sequence[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = config_parser(first_paragraph(__doc__), default_config="configs/rf2_dlrm_ml100k.yaml")
    presets = ", ".join(name for name in OPTIMIZATION_PRESETS if name != "none")
    parser.add_argument("--configurations", nargs="+", default=list(RF2_CONFIGURATIONS),
                        help="optimization presets (configs/presets.py; default: RF²'s 14); 'none' is always added "
                             f"as the reference; any of: {presets}")
    parser.add_argument("--mappings", nargs="+", default=list(MAPPINGS), choices=MAPPINGS, metavar="MAPPING",
                        help=f"tier-mapping presets, any of: {', '.join(MAPPINGS)} (default: all)")
    add_grid_arguments(parser, "rf2-matrix-<model>")
    parser.add_argument("--plot-mapping", default="hetero-vhigh",
                        help="mapping of the per-tier change plot (Fig. 8), one of --mappings (default: %(default)s)")
    add_report_argument(parser)
    args = parser.parse_args(argv)
    base = load_or_exit(args)
    unknown = [c for c in args.configurations if c not in OPTIMIZATION_PRESETS]
    if unknown:
        print(f"error: unknown configuration(s) {unknown}; known: {', '.join(OPTIMIZATION_PRESETS)}", file=sys.stderr)
        return EXIT_BAD_INPUT
    if base.fl.overselect > 0:
        print("error: fl.overselect must be 0 in the base config: over-selection is one of the configurations",
              file=sys.stderr)
        return EXIT_BAD_INPUT
    configurations = ["none", *[c for c in args.configurations if c != "none"]]
    out = grid_folder(args, base, f"rf2-matrix-{base.model.kind}")
    rows = run_matrix(base, MatrixAxes(configurations, args.mappings, args.seeds), out, args.parallel, args.address)
    measures = write_outputs(rows, cfg_tiers(base), out, args.plot_mapping)
    print(matrix_markdown(measures, cfg_tiers(base), args.plot_mapping))
    print(f"wrote {out}")
    if args.report:
        run = RunDescription(job_command(__file__, argv), args.seeds, config_dataset_title(base), grid_setting(base))
        write_page(matrix_page(measures, cfg_tiers(base), args.plot_mapping, run=run, strategy=base.fl.strategy.kind),
                   args.report)
    return 0


if __name__ == "__main__":
    sys.exit(run_guarded(main))
