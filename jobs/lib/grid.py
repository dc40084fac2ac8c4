"""Experiment grids (jobs/rf2_matrix.py, jobs/ceag_compare.py, jobs/cali3f_compare.py,
jobs/dp_tiers.py): each cell is one Ray task running the aggregator's round loop in process
(``cluster/fl/inprocess.py``, bit-identical to an actor run of the same config), as many at once
as the cluster has CPUs, on any node. The task itself writes the cell's results to
``<out>/cells/<name>.parquet`` (per tier) and ``<name>.rounds.parquet`` (per round) in the storage
the moment it finishes, so they land there whichever node ran it; a rerun skips every cell whose
files carry the same config hash, so a killed grid resumes where it stopped.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional

import pandas as pd
import pyarrow as pa

from cluster.storage import Storage, StorageError
from configs import SimConfig, config_hash


@dataclass(frozen=True)
class Cell:
    """One run of a grid: its config, a label for tables (e.g. the configuration's name) and
    where its files go."""

    cfg: SimConfig
    label: str
    folder: Storage
    name: str

    @property
    def rounds_name(self) -> str:
        return self.name.removesuffix(".parquet") + ".rounds.parquet"


CELL_TEST_MEASURES = ("auc", "acc", "hr10", "ndcg10")
CELL_TRAIN_MEASURES = ("auc_train", "acc_train", "pair_train")


def cell_results(config: dict, label: str) -> tuple[list[dict], list[dict]]:
    """Run one cell (in a Ray task): rows per tier and 'all' — the family's held-out and train
    measures (a click model's AUC and accuracy on both splits; NCF's HR@10 and NDCG@10 held out
    and its within-client pair rate on train), simulated time, uploaded MB — and one row per
    round (loss, clock, CEAG's λ and ψ)."""
    import torch

    from cluster.fl.inprocess import run_in_process
    from cluster.fl.experiment import build

    torch.set_num_threads(1)  # a cell is one task on one CPU; its neighbours take the others
    cfg = SimConfig.model_validate(config)
    result = run_in_process(build(cfg))
    digest = config_hash(cfg)
    identity = {"model": cfg.model.kind, "mapping": cfg.tier_mapping.mapping, "configuration": label,
                "seed": cfg.seed, "config_hash": digest}
    upload_mb = sum(r.get("upload_mb", 0.0) for r in result.history)
    # Click models report AUC and accuracy on both splits; NCF reports HR@10 held out and the
    # within-client pair rate on train: each row keeps the measures its family has.
    test_names = [name for name in CELL_TEST_MEASURES if name in result.test]
    train_names = [name for name in CELL_TRAIN_MEASURES if name in result.train]
    tiers = []
    for tier in (*[p.name for p in cfg.tiers.profiles], "all"):
        suffix = "" if tier == "all" else f"_{tier}"
        tiers.append({
            **identity, "tier": tier, **{name: result.test[name + suffix] for name in test_names},
            **{name: result.train[name + suffix] for name in train_names},
            "sim_time_s": result.sim_time_s, "upload_mb": upload_mb, "rounds": cfg.fl.rounds,
        })
    kept = ("round", "sim_time_s", "train_loss", "upload_mb")
    rounds = [{**identity, **{k: v for k, v in r.items() if k in kept or k.startswith(("lambda_", "psi_"))}}
              for r in result.history]
    return tiers, rounds


def headline_results(config: dict, label: str) -> tuple[list[dict], list[dict]]:
    """Run one cell of any model family (in a Ray task): rows per tier and 'all' with the family's
    headline test measure of the final model (``metric`` names it: AUC for click models, HR@10
    for NCF), simulated time, uploaded MB, the cell's wall-clock seconds and, under a privacy
    mechanism, the final ε, δ and σ and the mean share of clipped clients; one row per round
    (loss, clock, ε, clipped share)."""
    import time

    import numpy as np
    import torch

    from cluster.fl.experiment import build
    from cluster.fl.inprocess import trained_loop

    torch.set_num_threads(1)  # a cell is one task on one CPU; its neighbours take the others
    started = time.perf_counter()
    cfg = SimConfig.model_validate(config)
    exp = build(cfg)
    metric = exp.ops.metric_names[0]
    loop = trained_loop(exp)  # the final model is all a cell reports: no evaluation on fl.eval_every
    test, history = loop.evaluate("test"), loop.history
    identity = {"model": cfg.model.kind, "mapping": cfg.tier_mapping.mapping, "configuration": label,
                "seed": cfg.seed, "config_hash": config_hash(cfg)}
    last = history[-1] if history else {}
    clipped = [r["dp_clipped"] for r in history if "dp_clipped" in r]
    privacy = {"dp_epsilon": last.get("dp_epsilon", np.nan), "dp_delta": last.get("dp_delta", np.nan),
               "dp_noise_multiplier": last.get("dp_noise_multiplier", np.nan),
               "dp_clipped": float(np.mean(clipped)) if clipped else np.nan}
    upload_mb = sum(r.get("upload_mb", 0.0) for r in history)
    wall_s = time.perf_counter() - started
    tiers = []
    for tier in (*[p.name for p in cfg.tiers.profiles], "all"):
        suffix = "" if tier == "all" else f"_{tier}"
        tiers.append({**identity, "tier": tier, "metric": metric, metric: float(test[metric + suffix]), **privacy,
                      "sim_time_s": loop.server.sim_time_s, "upload_mb": upload_mb, "rounds": cfg.fl.rounds,
                      "wall_s": wall_s})
    kept = ("round", "sim_time_s", "train_loss", "upload_mb", "dp_epsilon", "dp_clipped")
    rounds = [{**identity, **{k: r.get(k, np.nan) for k in kept}} for r in history]
    return tiers, rounds


def _finished(cell: Cell) -> Optional[tuple[pd.DataFrame, pd.DataFrame]]:
    """The cell's files when written with the same config hash; None when absent, stale or unreadable."""
    try:
        tiers = cell.folder.read_parquet(cell.name).to_pandas()
        rounds = cell.folder.read_parquet(cell.rounds_name).to_pandas()
    except StorageError:
        return None
    digest = config_hash(cell.cfg)
    if len(tiers) and (tiers["config_hash"] == digest).all() and (rounds["config_hash"] == digest).all():
        return tiers, rounds
    return None


def run_cells(cells: list[Cell], parallel: Optional[int], address: Optional[str],
              quiet: bool = False, cell_fn: Callable[[dict, str], tuple[list[dict], list[dict]]] = cell_results,
              ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """All ``cells`` (finished ones read back), as (result rows, per-round rows) in the order of
    ``cells`` whatever order they finish in; ``cell_fn`` (config dict, label) → (rows, round
    rows) runs one cell in a task (default: a click model's)."""
    frames = {index: done for index, done in ((i, _finished(c)) for i, c in enumerate(cells)) if done is not None}
    todo = [index for index in range(len(cells)) if index not in frames]
    if todo:
        frames.update(_run_in_tasks({index: cells[index] for index in todo}, parallel, address, quiet, cell_fn))
    ordered = [frames[index] for index in range(len(cells))]
    return (pd.concat([tiers for tiers, _ in ordered], ignore_index=True),
            pd.concat([rounds for _, rounds in ordered], ignore_index=True))


def _run_in_tasks(todo: dict[int, Cell], parallel: Optional[int], address: Optional[str], quiet: bool,
                  cell_fn) -> dict[int, tuple[pd.DataFrame, pd.DataFrame]]:
    """Each cell as a Ray task, at most ``parallel`` (default: the cluster's CPUs) at a time."""
    import ray
    from tqdm import tqdm

    from actors.storage_probe import check_storage_on_every_node
    from cluster.bootstrap import init_ray

    started = init_ray(address=address)
    try:
        check_storage_on_every_node(next(iter(todo.values())).folder)
        slots = parallel or max(1, int(ray.cluster_resources().get("CPU", 1)))
        task = ray.remote(num_cpus=1)(run_and_store)
        pending, queue, done = {}, list(todo.items()), {}
        with tqdm(total=len(todo), desc="cells", disable=quiet) as progress:
            while queue or pending:
                while queue and len(pending) < slots:
                    index, cell = queue.pop(0)
                    pending[task.remote(cell_fn, cell.cfg.model_dump(mode="json"), cell.label, cell.folder,
                                        cell.name, cell.rounds_name)] = index
                ready, _ = ray.wait(list(pending), num_returns=1)
                done[pending.pop(ready[0])] = ray.get(ready[0])
                progress.update(1)
        return done
    finally:
        if started:
            ray.shutdown()


def run_and_store(cell_fn: Callable[[dict, str], tuple[list[dict], list[dict]]], config: dict, label: str,
                  folder: Storage, name: str, rounds_name: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """One cell in its task: run it, then write its files to the storage from the node it ran on."""
    tiers, rounds = (pd.DataFrame(rows) for rows in cell_fn(config, label))
    # rounds first: a cell counts as finished only once both files exist
    folder.write_parquet(rounds_name, pa.Table.from_pandas(rounds, preserve_index=False))
    folder.write_parquet(name, pa.Table.from_pandas(tiers, preserve_index=False))
    return tiers, rounds


def add_grid_arguments(parser, default_out: str) -> None:
    """The options every grid job shares: seeds, output folder, cells at once, Ray address."""
    from jobs.lib.cli import add_storage_argument

    parser.add_argument("--seeds", nargs="+", type=int, default=[0],
                        help="seeds, each a full repetition; three or more give 95 %% confidence intervals (default: %(default)s)")
    add_storage_argument(parser)
    parser.add_argument("--out", metavar="LOCATION",
                        help=f"the grid's folder, a path or URI (default: <storage>/{default_out})")
    parser.add_argument("--parallel", type=int, help="cells at once (default: the cluster's CPUs)")
    parser.add_argument("--address", help="Ray address to join (default: $RAY_ADDRESS, else a private local Ray)")


def grid_folder(args, base: SimConfig, default_name: str) -> Storage:
    """``--out``, else ``<--storage or the config's storage>/<default_name>``."""
    if args.out:
        return Storage(args.out)
    return Storage(args.storage or base.storage) / default_name


def cell(cfg: SimConfig, label: str, out: Storage, name: Optional[str] = None) -> Cell:
    """A grid cell whose files go to ``out/cells``; the default name spells model, mapping, label and seed."""
    if name is None:
        safe = label.replace(":", "-").replace("/", "-")
        name = f"{cfg.model.kind}__{cfg.tier_mapping.mapping}__{safe}__s{cfg.seed}.parquet"
    return Cell(cfg, label, out / "cells", name)
