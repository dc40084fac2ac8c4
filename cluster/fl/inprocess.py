"""The round loop of the aggregator actor, in one process over the same pure cores: the server
plans, each worker core trains its kept clients, the ops merge and average, the server steps and
runs its strategy's device steps (Cali3F) on the cores.

Results equal an actor run of the same config bit for bit (clients train the same whichever
worker holds them, uploads are summed in client order), so experiment grids run whole cells as
single Ray tasks — the parallel unit is the cell, not the client.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np

from cluster.fl.click_worker_core import ClickWorkerCore
from cluster.fl.records import round_record
from cluster.fl.server_core import FederatedServer
from cluster.fl.shards import build_click_shards, build_shards
from cluster.fl.worker_core import ClientWorkerCore


@dataclass
class InProcessRun:
    history: list[dict]
    params: dict[str, np.ndarray]
    test: dict[str, float]
    train: dict[str, float]
    sim_time_s: float


class CorePool:
    """``WorkerPool`` over in-process worker cores, in worker order."""

    def __init__(self, cores: list):
        self.cores = cores

    def broadcast(self, method: str, *args) -> list:
        return [getattr(core, method)(*args) for core in self.cores]


def build_cores(exp) -> list:
    """The worker cores of an experiment (``jobs.fl_sim.build``), as its actors would hold them."""
    cfg = exp.cfg
    if exp.click is not None:
        return [ClickWorkerCore(shard, exp.spec, exp.recipe, cfg.seed)
                for shard in build_click_shards(exp.click, exp.worker_of_user, exp.n_workers)]
    shards = build_shards(exp.world.population, exp.world.leave_one_out, exp.spec, cfg.seed, exp.worker_of_user,
                          exp.n_workers)
    return [ClientWorkerCore(shard, exp.spec, exp.recipe, cfg.seed) for shard in shards]


def train_rounds(exp, eval_every: Optional[int] = None) -> tuple[FederatedServer, list, list[dict]]:
    """Train the ``fl.rounds`` rounds of an experiment; returns the server, the worker cores and
    one record per round. ``eval_every``: NCF models are evaluated (HR/NDCG) every that many
    rounds and at the last one; None: never (click grids evaluate once, at the end)."""
    cfg = exp.cfg
    cores = build_cores(exp)
    pool = CorePool(cores)
    server = FederatedServer(cfg.fl, exp.ops, exp.fleet, cfg.seed)
    names = exp.fleet.tiers.names
    history = []
    for _ in range(cfg.fl.rounds):
        plan = server.plan_round()
        kept = plan.kept_clients
        results = []
        for worker, core in enumerate(cores):
            clients = np.sort(kept[exp.worker_of_user[kept] == worker])
            if len(clients):
                results.append(core.train(server.round_index, clients, server.params, server.client_settings(clients)))
        merged = exp.ops.merge(results)
        extra = server.apply(plan, merged)
        extra.update(server.after_round(pool))
        evaluation = None
        if eval_every and exp.click is None and (server.round_index % eval_every == 0 or server.round_index == cfg.fl.rounds):
            evaluation = evaluate_ncf(exp, cores, server)[0]
        record = round_record(plan, merged, np.zeros(0, np.int64), exp.fleet.tier_of_user, names,
                              server.sim_time_s, 0.0, evaluation, exp.ops.upload_stats(merged))
        history.append({**record, **extra})
    return server, cores, history


def run_click_rounds(exp) -> InProcessRun:
    """All rounds of a click-model experiment, then test and train AUC and accuracy per tier."""
    server, cores, history = train_rounds(exp)
    return InProcessRun(history, server.params, evaluate(exp, cores, server.params, "test"),
                        evaluate(exp, cores, server.params, "train"), server.sim_time_s)


def evaluate(exp, cores: list[ClickWorkerCore], params: dict[str, np.ndarray], split: str) -> dict[str, float]:
    """AUC overall and per tier over every core's ``split`` rows, ordered as the aggregator orders them."""
    parts = [core.evaluate(params, split) for core in cores]
    owners = np.concatenate([p[0] for p in parts])
    order = np.argsort(owners, kind="stable")
    labels = np.concatenate([p[1] for p in parts])[order]
    scores = np.concatenate([p[2] for p in parts])[order]
    return exp.ops.summarize(owners[order], labels, scores, exp.fleet.tier_of_user, exp.fleet.tiers.names, split)


def evaluate_ncf(exp, cores: list[ClientWorkerCore], server: FederatedServer) -> tuple[dict[str, float], tuple]:
    """Leave-one-out HR@10 / NDCG@10 summary, and (clients, HR, NDCG) per client in id order,
    each client served as the strategy serves it (its cluster's or its personal dense part)."""
    clusters = server.cluster_view()
    parts = [core.evaluate(server.params, clusters=clusters) for core in cores]
    clients = np.concatenate([p[0] for p in parts])
    order = np.argsort(clients, kind="stable")
    per_client = (clients[order], np.concatenate([p[1] for p in parts])[order], np.concatenate([p[2] for p in parts])[order])
    return exp.ops.summarize(*per_client, exp.fleet.tier_of_user, exp.fleet.tiers.names), per_client
