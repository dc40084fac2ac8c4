"""Build the simulated world from a config and print its summary: data, splits, tier mapping.

    python jobs/build_world.py --config configs/demo.yaml [--set tier_mapping.mapping=hetero-high]
"""

from __future__ import annotations

import sys
from pathlib import Path

if __package__ in (None, ""):
    # Run as a script (also under `ray job submit`): import this checkout, not the script folder.
    sys.path[0] = str(Path(__file__).resolve().parents[1])

import time
from typing import Optional, Sequence

import numpy as np
import pyarrow as pa

from cluster.data.parquet_io import write_table_atomic
from cluster.world import World, build_world
from configs import config_hash
from jobs.lib.cli import add_storage_argument, config_parser, first_paragraph, load_or_exit, run_guarded, with_storage
from jobs.lib.outputs import new_run_dir, write_json_atomic, write_resolved_config


def population_table(world: World, cfg_hash: str, seed: int) -> pa.Table:
    population = world.population
    tier_names = np.asarray(population.tiers.names, dtype=object)
    loo = world.leave_one_out
    test_item = np.full(population.n_clients, -1, dtype=np.int64)
    test_item[loo.test_users] = loo.test_items
    return pa.table(
        {
            "user": np.arange(population.n_clients, dtype=np.int32),
            "user_id": world.dataset.user_ids,
            "tier": pa.array(tier_names[population.tier_of_user].tolist(), pa.string()),
            "train_samples": population.samples_per_client(),
            "test_item": test_item,
            "config_hash": pa.array([cfg_hash] * population.n_clients, pa.string()),
            "seed": pa.array([seed] * population.n_clients, pa.int64()),
        }
    )


def format_summary(summary: dict) -> str:
    lines = [
        f"dataset       {summary['dataset']}: {summary['users']:,} users x {summary['items']:,} items, "
        f"{summary['interactions']:,} interactions (density {summary['density']:.4f})",
        f"clicks        {summary['clicks']:,} ({summary['click_rate']:.1%} of interactions)",
        f"leave-one-out {summary['loo_test_users']:,} test users x (1 + {summary['loo_negatives']}) candidates, "
        f"{summary['loo_train_interactions']:,} training interactions",
        f"click split   {summary['holdout_train']:,} train / {summary['holdout_test']:,} held out",
        f"tier mapping  heterogeneity (mean pairwise JS divergence) = {summary['tier_heterogeneity_js']:.4f}",
        f"{'tier':<8}{'clients':>10}{'train samples':>15}{'median':>8}{'ms/sample':>11}{'up Mbps':>9}",
    ]
    for row in summary["tiers"]:
        lines.append(
            f"{row['tier']:<8}{row['clients']:>10,}{row['train_samples']:>15,}{row['median_samples']:>8.0f}"
            f"{row['compute_ms_per_sample']:>11.1f}{row['upload_mbps']:>9.1f}"
        )
    return "\n".join(lines)


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = config_parser(first_paragraph(__doc__))
    parser.add_argument("--no-cache", action="store_true", help="parse or generate the data afresh")
    add_storage_argument(parser)
    args = parser.parse_args(argv)
    cfg = with_storage(load_or_exit(args), args.storage)
    started = time.perf_counter()
    world = build_world(cfg, use_cache=not args.no_cache)
    summary = {**world.summary(), "seconds": time.perf_counter() - started, "config_hash": config_hash(cfg)}
    print(format_summary(summary))

    folder = new_run_dir(cfg, "world")
    write_resolved_config(folder, cfg)
    write_table_atomic(population_table(world, summary["config_hash"], cfg.seed), folder / "population.parquet")
    write_json_atomic(folder / "summary.json", summary)
    print(f"wrote {folder}")
    return 0


if __name__ == "__main__":
    sys.exit(run_guarded(main))
