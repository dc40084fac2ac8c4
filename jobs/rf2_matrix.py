"""RF²'s experiment matrix: every tier-aware optimization under every tier mapping, per-tier AUC
change against no optimization, MDAC, and what each buys in simulated time.

    python jobs/rf2_matrix.py [--config configs/rf2_dlrm_ml100k.yaml] [--set model.kind=din]
        [--configurations none prune-1:4:16 ...] [--mappings random hetero-vhigh ...] [--seeds 0 1]
        [--out runs/rf2-matrix-dlrm] [--parallel 2] [--plot-mapping hetero-vhigh]

Each cell (mapping × configuration × seed) is one Ray task running the aggregator's round loop
in process (``cluster/fl/inprocess.py``; bit-identical to an actor run of the same config), as
many at once as the cluster has CPUs (or ``--parallel``). A finished cell is written to
``<out>/cells/`` at once and skipped when the job runs again with the same settings, so a killed
matrix resumes. Outputs: cells.parquet (AUC per cell and tier, held-out and train),
measures.parquet (relative change per tier, MDAC, speed-up), matrix.md, mdac.png (RF² Fig. 6)
and tier_change_<mapping>.png (RF² Fig. 8).
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
import pyarrow.parquet as pq

from cluster.data.parquet_io import write_table_atomic
from cluster.fairness.matrix import cell_measures, mean_over_seeds
from configs import SimConfig, config_hash
from configs.presets import OPTIMIZATION_PRESETS
from jobs.cli import EXIT_BAD_INPUT, config_parser, load_or_exit, run_guarded
from jobs.rf2_report import matrix_markdown, plot_mdac, plot_tier_change

MAPPINGS = ("random", "hetero-vlow", "hetero-low", "hetero-mid", "hetero-high", "hetero-vhigh")


def cell_config(base: SimConfig, mapping: str, configuration: str, seed: int) -> SimConfig:
    data = base.model_dump(mode="json")
    data["seed"] = seed
    data["tier_mapping"] = {**data["tier_mapping"], "mapping": mapping, "alpha": None}
    data["fl"] = {**data["fl"], "optimization": configuration}
    return SimConfig.model_validate(data)


def cell_name(cfg: SimConfig, configuration: str) -> str:
    return f"{cfg.model.kind}__{cfg.tier_mapping.mapping}__{configuration.replace(':', '-')}__s{cfg.seed}"


def run_cell(config: dict, configuration: str) -> list[dict]:
    """One cell's rows: AUC per tier and overall, held-out and train, and the simulated time."""
    import torch

    from cluster.fl.inprocess import run_click_rounds
    from jobs.fl_sim import build

    torch.set_num_threads(1)  # a cell is one task on one CPU; its neighbours take the others
    cfg = SimConfig.model_validate(config)
    result = run_click_rounds(build(cfg))
    upload_mb = sum(r.get("upload_mb", 0.0) for r in result.history)
    rows = []
    for tier in (*cfg_tiers(cfg), "all"):
        suffix = "" if tier == "all" else f"_{tier}"
        rows.append({
            "model": cfg.model.kind, "mapping": cfg.tier_mapping.mapping, "configuration": configuration,
            "seed": cfg.seed, "tier": tier, "auc": result.test["auc" + suffix],
            "auc_train": result.train["auc_train" + suffix], "sim_time_s": result.sim_time_s,
            "upload_mb": upload_mb, "rounds": cfg.fl.rounds, "config_hash": config_hash(cfg),
        })
    return rows


def cfg_tiers(cfg: SimConfig) -> tuple[str, ...]:
    return tuple(p.name for p in cfg.tiers.profiles)


def _finished(path: Path, digest: str) -> Optional[pd.DataFrame]:
    """A cell file written by a run with the same settings, or None (absent, stale or unreadable)."""
    if not path.exists():
        return None
    try:
        frame = pq.read_table(path).to_pandas()
    except (OSError, pa.ArrowInvalid):
        return None
    return frame if len(frame) and (frame["config_hash"] == digest).all() else None


def run_matrix(base: SimConfig, configurations: Sequence[str], mappings: Sequence[str], seeds: Sequence[int],
               out: Path, parallel: Optional[int], address: Optional[str], quiet: bool = False) -> pd.DataFrame:
    import ray
    from tqdm import tqdm

    from cluster.bootstrap import init_ray
    from cluster.world import build_world

    build_world(base)  # fills the data cache once, and bad data fails here, before any task starts
    cells, frames = [], []
    for seed in seeds:
        for mapping in mappings:
            for configuration in configurations:
                cfg = cell_config(base, mapping, configuration, seed)
                path = out / "cells" / f"{cell_name(cfg, configuration)}.parquet"
                done = _finished(path, config_hash(cfg))
                if done is not None:
                    frames.append(done)
                else:
                    cells.append((cfg, configuration, path))
    if cells:
        started = init_ray(address=address)
        try:
            slots = parallel or max(1, int(ray.cluster_resources().get("CPU", 1)))
            task = ray.remote(num_cpus=1)(run_cell)
            pending, queue = {}, list(cells)
            with tqdm(total=len(cells), desc="cells", disable=quiet) as progress:
                while queue or pending:
                    while queue and len(pending) < slots:
                        cfg, configuration, path = queue.pop(0)
                        pending[task.remote(cfg.model_dump(mode="json"), configuration)] = path
                    ready, _ = ray.wait(list(pending), num_returns=1)
                    path = pending.pop(ready[0])
                    frame = pd.DataFrame(ray.get(ready[0]))
                    write_table_atomic(pa.Table.from_pandas(frame, preserve_index=False), path)
                    frames.append(frame)
                    progress.update(1)
        finally:
            if started:
                ray.shutdown()
    return pd.concat(frames, ignore_index=True)


def write_outputs(rows: pd.DataFrame, tiers: tuple[str, ...], out: Path, plot_mapping: str) -> pd.DataFrame:
    rows = rows.sort_values(["model", "mapping", "seed", "configuration", "tier"], kind="stable")
    write_table_atomic(pa.Table.from_pandas(rows, preserve_index=False), out / "cells.parquet")
    per_seed = cell_measures(rows, tiers, "auc")
    train = cell_measures(rows, tiers, "auc_train")
    per_seed = per_seed.merge(
        train[["model", "mapping", "seed", "configuration", "auc_train", "mdac", "change_all"]].rename(
            columns={"mdac": "mdac_train", "change_all": "change_all_train"}),
        on=["model", "mapping", "seed", "configuration"])
    measures = mean_over_seeds(per_seed)
    write_table_atomic(pa.Table.from_pandas(measures, preserve_index=False), out / "measures.parquet")
    from jobs.outputs import write_text_atomic

    write_text_atomic(out / "matrix.md", matrix_markdown(measures, tiers, plot_mapping))
    plot_mdac(measures, out / "mdac.png")
    if plot_mapping in set(measures["mapping"]):
        plot_tier_change(measures, tiers, plot_mapping, out / f"tier_change_{plot_mapping}.png")
    return measures


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = config_parser(__doc__.splitlines()[0], default_config="configs/rf2_dlrm_ml100k.yaml")
    parser.add_argument("--configurations", nargs="+", default=list(OPTIMIZATION_PRESETS),
                        help="preset names (configs/presets.py); 'none' is always added as the reference")
    parser.add_argument("--mappings", nargs="+", default=list(MAPPINGS), choices=MAPPINGS)
    parser.add_argument("--seeds", nargs="+", type=int, default=[0])
    parser.add_argument("--out", type=Path, help="output folder (default: <output_dir>/rf2-matrix-<model>)")
    parser.add_argument("--parallel", type=int, help="cells at once (default: the cluster's CPUs)")
    parser.add_argument("--plot-mapping", default="hetero-vhigh", help="mapping of the per-tier change plot (Fig. 8)")
    parser.add_argument("--address", help="Ray address to join (default: $RAY_ADDRESS, else a private local Ray)")
    args = parser.parse_args(argv)
    base = load_or_exit(args)
    unknown = [c for c in args.configurations if c not in OPTIMIZATION_PRESETS]
    if unknown:
        print(f"error: unknown configuration(s) {unknown}; known: {', '.join(OPTIMIZATION_PRESETS)}", file=sys.stderr)
        return EXIT_BAD_INPUT
    if not base.model.is_click:
        print(f"error: the matrix measures click models (dlrm, din), not model.kind={base.model.kind!r}", file=sys.stderr)
        return EXIT_BAD_INPUT
    if base.fl.overselect > 0:
        print("error: fl.overselect must be 0 in the base config: over-selection is one of the configurations",
              file=sys.stderr)
        return EXIT_BAD_INPUT
    configurations = ["none", *[c for c in args.configurations if c != "none"]]
    out = args.out or base.output_dir / f"rf2-matrix-{base.model.kind}"
    rows = run_matrix(base, configurations, args.mappings, args.seeds, out, args.parallel, args.address)
    measures = write_outputs(rows, cfg_tiers(base), out, args.plot_mapping)
    print(matrix_markdown(measures, cfg_tiers(base), args.plot_mapping))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(run_guarded(main))
