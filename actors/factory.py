"""The one place that turns the plain actor classes into Ray actors, with names and resources."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import numpy as np
import ray

from actors.aggregator import Aggregator
from actors.client_worker import ClientWorker
from cluster.fl.click_shard import ClickShard
from cluster.fl.click_training import ClickRecipe
from cluster.fl.local_training import LocalRecipe
from cluster.fl.model_ops import ModelOps
from cluster.fl.server_core import FleetView
from cluster.fl.worker_core import ClientShard
from cluster.models.click import ClickSpec
from cluster.models.ncf import NCFSpec
from configs.schema import FLConfig


def worker_name(tier_name: str, index: int) -> str:
    return f"clients-{tier_name}-{index}"


def start_workers(cfg: FLConfig, shards: list[ClientShard | ClickShard], spec: NCFSpec | ClickSpec,
                  recipe: LocalRecipe | ClickRecipe, seed: int,
                  tier_names: tuple[str, ...], run_dir: Path) -> list:
    """One named actor per shard; each shard is written to ``run_dir/shards`` for the actor to load."""
    remote_cls = ray.remote(ClientWorker)
    checkpoint_dir = str(run_dir / "checkpoint")
    handles = []
    for index, shard in enumerate(shards):
        name = worker_name(tier_names[index // cfg.workers_per_tier], index % cfg.workers_per_tier)
        shard_path = run_dir / "shards" / f"{name}.npz"
        shard.save(shard_path)
        handles.append(
            remote_cls.options(
                name=name,
                num_cpus=cfg.worker_num_cpus,
                max_restarts=cfg.worker_max_restarts,
                max_task_retries=0,  # a lost round is counted as failed, never silently re-run
            ).remote(name, str(shard_path), spec, recipe, seed, checkpoint_dir)
        )
    return handles


def start_aggregator(cfg: FLConfig, ops: ModelOps, fleet: FleetView, seed: int, workers: list,
                     worker_of_user: np.ndarray, checkpoint_dir: Optional[str], run_name: str):
    return ray.remote(Aggregator).options(name="aggregator", num_cpus=0).remote(
        cfg, ops, fleet, seed, workers, worker_of_user, checkpoint_dir, run_name
    )
