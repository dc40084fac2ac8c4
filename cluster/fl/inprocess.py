"""The round loop of the aggregator actor, in one process over the same pure cores: the server
plans, each worker core trains its kept clients, the ops merge and average, the server steps.

Results equal an actor run of the same config bit for bit (clients train the same whichever
worker holds them, uploads are summed in client order), so experiment grids run whole cells as
single Ray tasks — the parallel unit is the cell, not the client.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from cluster.fl.click_worker_core import ClickWorkerCore
from cluster.fl.records import round_record
from cluster.fl.server_core import FederatedServer
from cluster.fl.shards import build_click_shards


@dataclass
class InProcessRun:
    history: list[dict]
    params: dict[str, np.ndarray]
    test: dict[str, float]
    train: dict[str, float]
    sim_time_s: float


def click_rounds(exp) -> tuple[FederatedServer, list[ClickWorkerCore], list[dict]]:
    """Train the ``fl.rounds`` rounds of a click-model experiment (``jobs.fl_sim.build``);
    returns the server, the worker cores and one record per round."""
    cfg = exp.cfg
    cores = [ClickWorkerCore(shard, exp.spec, exp.recipe, cfg.seed)
             for shard in build_click_shards(exp.click, exp.worker_of_user, exp.n_workers)]
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
        fairness = server.apply(plan, merged)
        record = round_record(plan, merged, np.zeros(0, np.int64), exp.fleet.tier_of_user, names,
                              server.sim_time_s, 0.0, None, exp.ops.upload_stats(merged))
        history.append({**record, **fairness})
    return server, cores, history


def run_click_rounds(exp) -> InProcessRun:
    """All rounds of a click-model experiment, then test and train AUC and accuracy per tier."""
    server, cores, history = click_rounds(exp)
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
