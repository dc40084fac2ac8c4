"""The round loop (``round_loop.py``) over the worker cores in this process, with no Ray at all.

Results equal an actor run of the same config bit for bit (clients train the same whichever
worker holds them, uploads are merged in client-id order), so experiment grids run whole cells as
single Ray tasks — the parallel unit is the cell, not the client.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np

from cluster.fl.experiment import Experiment
from cluster.fl.families.click.worker import ClickWorkerCore
from cluster.fl.round_loop import RoundLoop
from cluster.fl.server_core import FederatedServer
from cluster.fl.families.cores import worker_core
from cluster.fl.families.ncf.worker import NCFWorkerCore
from cluster.fl.worker_pool import CorePool, in_client_order


@dataclass
class InProcessRun:
    history: list[dict]
    params: dict[str, np.ndarray]
    test: dict[str, float]
    train: dict[str, float]
    sim_time_s: float


def build_cores(exp: Experiment) -> list:
    """The worker cores of an experiment, as its actors would hold them."""
    return [worker_core(shard, exp.spec, exp.recipe, exp.cfg.seed) for shard in exp.shards()]


def round_loop(exp: Experiment, eval_every: Optional[int] = None) -> RoundLoop:
    """The experiment's loop over fresh in-process cores. ``eval_every``: evaluate every that many
    rounds and at the last one; None: only when asked."""
    cfg = exp.cfg
    server = FederatedServer(cfg.fl, exp.ops, exp.fleet, cfg.seed)
    return RoundLoop(server, CorePool(build_cores(exp)), exp.worker_of_user, cfg.fl.rounds, eval_every)


def train_rounds(exp: Experiment, eval_every: Optional[int] = None) -> tuple[FederatedServer, list, list[dict]]:
    """Train the ``fl.rounds`` rounds of an experiment; returns the server, the worker cores and
    one record per round. ``eval_every``: NCF models are evaluated (HR/NDCG) every that many
    rounds and at the last one; None: never (click grids evaluate once, at the end)."""
    loop = round_loop(exp, eval_every if exp.click is None else None)
    for _ in range(exp.cfg.fl.rounds):
        loop.run_round()
    assert isinstance(loop.pool, CorePool)  # round_loop drives the cores in this process
    return loop.server, loop.pool.cores, loop.history


def run_click_rounds(exp: Experiment) -> InProcessRun:
    """All rounds of a click-model experiment, then test and train AUC and accuracy per tier."""
    server, cores, history = train_rounds(exp)
    return InProcessRun(
        history,
        server.params,
        evaluate(exp, cores, server.params, "test"),
        evaluate(exp, cores, server.params, "train"),
        server.sim_time_s,
    )


def evaluate(
    exp: Experiment, cores: list[ClickWorkerCore], params: dict[str, np.ndarray], split: str
) -> dict[str, float]:
    """AUC overall and per tier over every core's ``split`` rows, ordered as the aggregator orders them."""
    parts = in_client_order(CorePool(cores).evaluate(params, split, None))
    return exp.ops.summarize(*parts, exp.fleet.tier_of_user, exp.fleet.tiers.names, split)


def evaluate_ncf(
    exp: Experiment, cores: list[NCFWorkerCore], server: FederatedServer
) -> tuple[dict[str, float], tuple]:
    """Leave-one-out HR@10 / NDCG@10 summary, and (clients, HR, NDCG) per client in id order,
    each client served as the strategy serves it (its cluster's or its personal dense part)."""
    per_client = in_client_order(CorePool(cores).evaluate(server.params, "test", server.cluster_view()))
    return exp.ops.summarize(*per_client, exp.fleet.tier_of_user, exp.fleet.tiers.names), per_client
