"""Run Cali3F's comparison: FedAvg, Ditto and Cali3F with GMF, MLP and NeuMF on MovieLens 100K, with
the same budget of sampled clients per round — HR@10, NDCG@10, fairness (std of per-client
NDCG@10) and time to come within 5 % of the best NDCG@10.

    python jobs/cali3f_compare.py [--config configs/cali3f_ml100k.yaml] [--models gmf mlp neumf]
        [--strategies fedavg ditto cali3f] [--seeds 0] [--out runs/cali3f-compare] [--parallel 2] [--report PAGE.md]

Each cell (model × strategy × seed) is one Ray task running the aggregator's round loop in
process (``jobs/lib/grid.py``; bit-identical to ``jobs/fl_sim.py`` on actors, tested), written to
``<out>/cells/`` as soon as it finishes and skipped when the job runs again with the same
settings. Outputs: results.parquet (one row per cell), rounds.parquet (NDCG per evaluated round),
compare.md (the table, beside the paper's figures) and convergence.png; with ``--report``, a results
page of them.
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
from cluster.storage import Storage
from configs import SimConfig, config_hash
from jobs.lib.cli import EXIT_BAD_INPUT, config_parser, load_or_exit, run_guarded, first_paragraph
from jobs.lib.grid import add_grid_arguments, cell, grid_folder, run_cells
from jobs.lib.job_page import config_dataset_title, job_command, plural, write_page
from jobs.lib.results_page import add_report_argument

MODELS = ("gmf", "mlp", "neumf")
STRATEGIES = ("fedavg", "ditto", "cali3f")
# The base config's rates are the NCF recipe found for GMF under FedAvg (docs/concepts/federated-simulation.md,
# "The NCF learning rates"). Two cells need other rates, set here so every method of a model shares them:
# - MLP's dense part oscillates and collapses at the recipe's dense rate 3 under every method
#   (docs/results/cali3f-ditto-fedavg.md), so MLP cells train it at 1, item and user rates unchanged;
# - FastAgg (Cali3F eq. 5) averages an item only over the delegates that changed it, while FedAvg
#   divides it by the samples of every client in the round — the reason the recipe scales the
#   item rate ×100. Cali3F cells drop that ×100 (×10 of it still diverged on GMF).
DENSE_LR_DIVISOR = {"mlp": 3.0}
ITEM_LR_DIVISOR = {"cali3f": 100.0}


def cell_config(base: SimConfig, model: str, strategy: str, seed: int) -> SimConfig:
    data = base.model_dump(mode="json")
    fl = data["fl"]
    item_lr = fl["client_lr"] * fl["item_lr_scale"] / ITEM_LR_DIVISOR.get(strategy, 1.0)
    user_lr = fl["client_lr"] * fl["user_lr_scale"]
    dense_lr = fl["client_lr"] / DENSE_LR_DIVISOR.get(model, 1.0)
    data["seed"] = seed
    data["model"] = {**data["model"], "kind": model}
    data["fl"] = {**fl, "strategy": strategy, "client_lr": dense_lr, "item_lr_scale": item_lr / dense_lr,
                  "user_lr_scale": user_lr / dense_lr}
    return SimConfig.model_validate(data)


def ncf_cell_results(config: dict, label: str) -> tuple[list[dict], list[dict]]:
    """Run one cell (in a Ray task): its final leave-one-out metrics per tier and overall, and
    one row per round (NDCG where evaluated)."""
    import torch

    from cluster.fl.inprocess import trained_loop
    from cluster.fl.experiment import build

    torch.set_num_threads(1)
    cfg = SimConfig.model_validate(config)
    exp = build(cfg)
    loop = trained_loop(exp, cfg.fl.eval_every)
    server, history, final = loop.server, loop.history, loop.evaluate("test")
    identity = {"model": cfg.model.kind, "strategy": cfg.fl.strategy.kind, "seed": cfg.seed,
                "config_hash": config_hash(cfg)}
    row = {**identity, **{k: v for k, v in final.items() if k.startswith(("hr10", "ndcg10", "evaluated"))},
           "sim_time_s": server.sim_time_s, "rounds": cfg.fl.rounds,
           "upload_mb": sum(r.get("upload_mb", 0.0) for r in history)}
    kept = ("round", "sim_time_s", "train_loss", "hr10", "ndcg10", "ndcg10_std", "reclustered_clients")
    rounds = [{**identity, **{k: r.get(k, float("nan")) for k in kept}} for r in history]
    return [row], rounds


@dataclass(frozen=True)
class CompareAxes:
    """The cells of the comparison: every strategy with every model, once per seed."""

    models: Sequence[str]
    strategies: Sequence[str]
    seeds: Sequence[int]


def run_compare(base: SimConfig, axes: CompareAxes, out: Storage, parallel: Optional[int], address: Optional[str],
                quiet: bool = False) -> tuple[pd.DataFrame, pd.DataFrame]:
    from cluster.world import build_world

    build_world(base)  # fills the data cache once, and bad data fails here, before any task starts
    cells = []
    for seed in axes.seeds:
        for model in axes.models:
            for strategy in axes.strategies:
                cfg = cell_config(base, model, strategy, seed)
                cells.append(cell(cfg, strategy, out, f"{model}__{strategy}__s{seed}.parquet"))
    return run_cells(cells, parallel, address, quiet, cell_fn=ncf_cell_results)


def write_outputs(results: pd.DataFrame, rounds: pd.DataFrame, out: Storage, dataset: Optional[str] = None) -> str:
    from jobs.lib.cali3f_report import (
        comparison_markdown,
        comparison_table,
        paired_differences,
        paired_markdown,
        plot_convergence,
    )
    from jobs.lib.outputs import write_text_atomic

    write_table_atomic(pa.Table.from_pandas(results, preserve_index=False), out / "results.parquet")
    write_table_atomic(pa.Table.from_pandas(rounds, preserve_index=False), out / "rounds.parquet")
    markdown = comparison_markdown(comparison_table(results, rounds)) + paired_markdown(paired_differences(results))
    write_text_atomic(out / "compare.md", markdown)
    plot_convergence(rounds, out / "convergence.png", dataset)
    return markdown


def setting(cfg: SimConfig) -> str:
    """One sentence on what every cell ran."""
    return (f"Every cell: {plural(cfg.fl.rounds, 'round')} × {cfg.fl.clients_per_round} clients per round, NDCG@10 "
            f"every {plural(cfg.fl.eval_every, 'round')}, leave-one-out with {cfg.data.n_negatives} sampled negatives, "
            f"{cfg.tier_mapping.mapping} tiers, optimization `{cfg.fl.optimization.preset or cfg.fl.optimization.kind}`.")


def main(argv: Optional[Sequence[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = config_parser(first_paragraph(__doc__), default_config="configs/cali3f_ml100k.yaml")
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=MODELS,
                        help=f"recommendation models, any of {', '.join(MODELS)} (default: all)")
    parser.add_argument("--strategies", nargs="+", default=list(STRATEGIES), choices=STRATEGIES,
                        help=f"FL strategies, any of {', '.join(STRATEGIES)}; fedavg is needed, as the baseline "
                             "(default: all)")
    add_grid_arguments(parser, "cali3f-compare")
    add_report_argument(parser)
    args = parser.parse_args(argv)
    base = load_or_exit(args)
    if base.fl.strategy.kind != "fedavg":
        print("error: leave fl.strategy at fedavg in the base config: the job sets it per cell", file=sys.stderr)
        return EXIT_BAD_INPUT
    if "fedavg" not in args.strategies:
        print("error: --strategies must include fedavg, the baseline times are compared with", file=sys.stderr)
        return EXIT_BAD_INPUT
    out = grid_folder(args, base, "cali3f-compare")
    axes = CompareAxes(args.models, args.strategies, args.seeds)
    results, rounds = run_compare(base, axes, out, args.parallel, args.address)
    dataset = config_dataset_title(base)
    print(write_outputs(results, rounds, out, dataset))
    print(f"wrote {out}")
    if args.report:
        from jobs.lib.cali3f_report import comparison_page

        tiers = tuple(p.name for p in base.tiers.profiles)
        write_page(comparison_page(results, rounds, tiers, command=job_command(__file__, argv), seeds=args.seeds,
                                   dataset=dataset, setting=setting(base)), args.report)
    return 0


if __name__ == "__main__":
    sys.exit(run_guarded(main))
