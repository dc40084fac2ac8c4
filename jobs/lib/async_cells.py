"""A cell of jobs/async_tiers.py, run in a Ray task: one run, synchronous for its configured rounds
or asynchronous until the virtual clock reaches a budget (the synchronous run's time, so the arms
are compared at equal simulated time), then each tier's held-out quality, how many of its updates
were applied and with how much weight, and how stale they were."""

from __future__ import annotations

from typing import Optional

import numpy as np

from configs import SimConfig, config_hash


def async_tier_cell(config: dict, label: str,
                    budgets: Optional[dict[int, float]] = None) -> tuple[list[dict], list[dict]]:
    """``budgets``: per seed, the simulated seconds an asynchronous run trains for (None: the
    config's rounds)."""
    import torch

    from cluster.fl.experiment import build
    from cluster.fl.inprocess import round_loop

    torch.set_num_threads(1)  # a cell is one task on one CPU
    cfg = SimConfig.model_validate(config)
    exp = build(cfg)
    loop = round_loop(exp)
    budget = (budgets or {}).get(cfg.seed)
    while loop.round_index < cfg.fl.rounds and (budget is None or loop.server.sim_time_s < budget):
        loop.run_round()
    test, history = loop.evaluate("test"), loop.history
    metric = exp.ops.metric_names[0]
    names = exp.fleet.tiers.names
    eligible = exp.fleet.train_samples > 0
    population = np.bincount(exp.fleet.tier_of_user[eligible], minlength=len(names)) / max(int(eligible.sum()), 1)
    updates = np.array([sum(r[f"aggregated_{t}"] for r in history) for t in names], np.float64)
    applied = np.array([sum(r.get(f"applied_weight_{t}", np.nan) for r in history) for t in names], np.float64)
    undiscounted = np.array([sum(r.get(f"sample_weight_{t}", np.nan) for r in history) for t in names], np.float64)
    # The share of its FedAvg weight each tier keeps once its updates' staleness is discounted
    # (1 in synchronous rounds, which discount nothing).
    kept = applied / undiscounted if np.isfinite(applied).all() else np.ones(len(names))
    staleness = [_mean_staleness(history, t) for t in names]
    identity = {"model": cfg.model.kind, "mapping": cfg.tier_mapping.mapping, "configuration": label,
                "seed": cfg.seed, "config_hash": config_hash(cfg)}
    common = {"metric": metric, "sim_time_s": loop.server.sim_time_s, "steps": loop.round_index,
              "updates": float(updates.sum()),
              "finite": bool(all(np.isfinite(v).all() for v in loop.server.params.values()))}
    rows = []
    for index, tier in enumerate((*names, "all")):
        suffix = "" if tier == "all" else f"_{tier}"
        row = {**identity, "tier": tier, metric: float(test[metric + suffix]), **common}
        if tier != "all":
            row.update(population_share=float(population[index]),
                       update_share=float(updates[index] / max(updates.sum(), 1.0)),
                       kept_weight=float(kept[index]), staleness=staleness[index])
        rows.append(row)
    kept = ("round", "sim_time_s", "staleness_mean", "in_flight")
    rounds = [{**identity, **{k: r.get(k, np.nan) for k in kept}} for r in history]
    return rows, rounds


def _mean_staleness(history: list[dict], tier: str) -> float:
    """The tier's applied updates' mean staleness over the run (0 in synchronous rounds)."""
    counts = np.array([r[f"aggregated_{tier}"] for r in history], np.float64)
    means = np.array([r.get(f"staleness_mean_{tier}", 0.0) for r in history], np.float64)
    means = np.where(counts > 0, np.nan_to_num(means), 0.0)
    return float((counts * means).sum() / counts.sum()) if counts.sum() else float("nan")
