"""The one place that turns the plain actor classes into Ray actors, with names and resources."""

from __future__ import annotations

from typing import Optional

import numpy as np
import ray

from actors.aggregator import INITIAL_STATE, Aggregator
from actors.client_worker import ClientWorker
from cluster import checkpoint
from cluster.fl.families.base import WorkerSetup
from cluster.fl.server_core import ServerSetup
from cluster.storage import Storage
from configs.schema import FLConfig


def worker_name(tier_name: str, index: int) -> str:
    return f"clients-{tier_name}-{index}"


def start_workers(cfg: FLConfig, setup: WorkerSetup, tier_names: tuple[str, ...], run: Storage) -> list:
    """One named actor per worker (``worker_names``), each loading its clients from the run's
    ``shards/<name>.npz`` (saved before, by ``cluster.fl.shard.save_shards``), again after a
    restart, on whichever node."""
    remote_cls = ray.remote(ClientWorker)
    return [
        remote_cls.options(
            name=name,
            num_cpus=cfg.runtime.worker_num_cpus,
            max_restarts=cfg.runtime.worker_max_restarts,
            max_task_retries=0,  # a lost round is counted as failed, never silently re-run
        ).remote(name, run / "shards", setup, run / "checkpoint")
        for name in worker_names(cfg, tier_names)
    ]


def worker_names(cfg: FLConfig, tier_names: tuple[str, ...]) -> list[str]:
    """The workers ``start_workers`` starts, by name, in its order."""
    return [worker_name(tier, i) for tier in tier_names for i in range(cfg.runtime.workers_per_tier)]


def start_aggregator(setup: ServerSetup, checkpoints: Optional[Storage], run_name: str):
    """``max_restarts``: Ray brings a killed aggregator back, and it continues from ``checkpoints``.
    w⁰ is drawn here, on the driver, which has torch loaded already: the aggregator does not. With
    checkpoints, w⁰ goes to them (``initial.npz``, the checkpoint format) instead of among the
    constructor arguments: most models' w⁰ is over Ray's inline limit, and Ray cannot promise an
    object-store argument to a restarted actor. The set-up itself stays inline (tens of KB at
    MovieLens scale) and is held by the driver for the whole job."""
    cfg = setup.cfg
    initial: Optional[dict[str, np.ndarray]] = setup.ops.init_params(setup.seed)
    if checkpoints is not None:
        checkpoint.write_state(checkpoints, INITIAL_STATE, "initial_params", initial)
        initial = None
    return (
        ray.remote(Aggregator)
        .options(
            name="aggregator",
            num_cpus=0,
            max_restarts=cfg.runtime.aggregator_max_restarts if checkpoints is not None else 0,
            max_task_retries=0,  # a round in flight when it died is redone from the checkpoint instead
        )
        .remote(setup, worker_names(cfg, setup.fleet.tiers.names), checkpoints, run_name, initial)
    )
