"""What the aggregator does, as a plain class: plan a round (select, over-select, drop by
simulated latency), average what the kept clients uploaded, step the global model, advance the
virtual clock. The actor around it only moves data between this and the client workers."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np

from cluster.fairness.ceag_round import CEAGController
from cluster.fl.aggregation import ServerOptimizer
from cluster.fl.cali3f_server import Cali3FServer, WorkerPool
from cluster.fl.model_ops import ModelOps
from cluster.fl.selection import EpochSampler, RoundPlan, keep_fastest, n_to_select
from cluster.rng import stream
from cluster.tiers.latency import TierTable, sample_round_latency
from cluster.tiers.optimizations import TierPlan
from configs.schema import FLConfig


@dataclass(frozen=True)
class FleetView:
    """What the server knows of the fleet: tier_of_user (n,), train_samples (n,) per client;
    reference_accuracy (T,): the unoptimized model's per-tier train accuracy, for CEAG;
    metadata (n, f): privacy-neutral encoded user columns, for Cali3F's first clusters."""

    tiers: TierTable
    tier_of_user: np.ndarray
    train_samples: np.ndarray
    reference_accuracy: Optional[np.ndarray] = None
    metadata: Optional[np.ndarray] = None


class FederatedServer:
    def __init__(self, cfg: FLConfig, ops: ModelOps, fleet: FleetView, seed: int):
        self.cfg = cfg
        self.ops = ops
        self.fleet = fleet
        self.seed = seed
        self.tier_plan = TierPlan.resolve(cfg.optimization, cfg.effective_overselect, fleet.tiers.names)
        self.params = ops.init_params(seed)
        self.optimizer = ServerOptimizer(cfg.server_optimizer, cfg.server_lr, cfg.server_eps)
        eligible = (fleet.train_samples > 0) & ~self.tier_plan.excluded[fleet.tier_of_user]
        self.sampler = EpochSampler(np.flatnonzero(eligible), stream(seed, "selection"))
        self.cali3f = None
        if cfg.strategy.kind == "cali3f":
            if fleet.metadata is None:
                raise ValueError("Cali3F needs the clients' metadata to form its first clusters (FleetView.metadata)")
            dense0 = {n: self.params[n] for n in ops.spec.dense_shapes()}
            self.cali3f = Cali3FServer(cfg.strategy, ops.spec, fleet.metadata, eligible, fleet.train_samples, dense0,
                                       cfg.client_lr, seed)
        self.round_index = 0
        self.sim_time_s = 0.0
        self.fairness = None
        if cfg.fairness.kind == "ceag":
            if fleet.reference_accuracy is None:
                raise ValueError("CEAG needs the reference model's per-tier accuracy (FleetView.reference_accuracy)")
            tier_weights = np.bincount(fleet.tier_of_user, weights=fleet.train_samples, minlength=fleet.tiers.n_tiers)
            self.fairness = CEAGController(cfg.fairness, fleet.reference_accuracy, tier_weights, fleet.tiers.names, seed)

    def plan_round(self) -> RoundPlan:
        cfg, fleet = self.cfg, self.fleet
        n_selected = n_to_select(cfg.clients_per_round, self.tier_plan.overselect)
        selected = self.cali3f.draw(n_selected) if self.cali3f is not None else self.sampler.draw(n_selected)
        tiers = fleet.tier_of_user[selected]
        costs = self.ops.round_costs(selected, tiers, fleet.train_samples[selected], self.tier_plan)
        latency = sample_round_latency(
            fleet.tiers,
            tiers,
            costs.work_samples,
            model_bytes=costs.download_bytes,
            upload_bytes=costs.upload_bytes,
            rng=stream(self.seed, "latency", self.round_index),
            local_epochs=cfg.local_epochs,
            compute_fraction=costs.compute_fraction,
        )
        kept = keep_fastest(latency.total_s, cfg.clients_per_round, cfg.deadline_s)
        return RoundPlan(self.round_index, selected, latency.total_s, kept, costs.upload_bytes)

    def client_settings(self, clients: np.ndarray):
        """What ``clients`` train with this round (their width, compression, cluster), or None."""
        settings = self.ops.client_settings(self.fleet.tier_of_user[clients], self.tier_plan)
        return self.cali3f.settings(clients, settings) if self.cali3f is not None else settings

    def cluster_view(self):
        """Cali3F's clusters, with which each client is evaluated and served; None otherwise."""
        return self.cali3f.view() if self.cali3f is not None else None

    def apply(self, plan: RoundPlan, merged) -> dict:
        """Average the kept clients' uploads into the global model and close the round. With a
        fairness mitigation, its weights replace FedAvg's; returns its record fields."""
        weights, record = None, {}
        if self.fairness is not None:
            weights, record = self.fairness.round_weights(merged.clients, merged.n_samples, merged.correct,
                                                          self.fleet.tier_of_user, self.round_index)
        delta = self.ops.average(merged, weights)
        if self.cali3f is not None and len(merged.clients):
            # The global dense part is FedAvg'd; FastAgg sets the item rows (eq. 5, exactly).
            items = self.cali3f.apply(merged, {n: self.params[n].copy() for n in self.ops.spec.dense_shapes()})
            delta = {n: v for n, v in delta.items() if n not in items}
            for table, update in items.items():
                self.params[table] += update
        if delta:
            self.optimizer.step(self.params, delta)
        self.sim_time_s += plan.duration_s
        self.round_index += 1
        return record

    def after_round(self, pool: WorkerPool) -> dict:
        """The strategy's steps on the devices once the models are updated (Cali3F: eq. 4 and
        re-clustering); returns their record fields."""
        return self.cali3f.after_round(pool, self.round_index) if self.cali3f is not None else {}

    def state_dict(self) -> dict:
        return {
            "params": {k: v.copy() for k, v in self.params.items()},
            "optimizer": self.optimizer.state_dict(),
            "sampler": self.sampler.state_dict(),
            "round_index": self.round_index,
            "sim_time_s": self.sim_time_s,
            "fairness": self.fairness.state_dict() if self.fairness is not None else None,
            "cali3f": self.cali3f.state_dict() if self.cali3f is not None else None,
        }

    def load_state_dict(self, state: dict) -> None:
        self.params = {k: np.array(v, dtype=np.float32) for k, v in state["params"].items()}
        self.optimizer.load_state_dict(state["optimizer"])
        self.sampler.load_state_dict(state["sampler"])
        self.round_index = int(state["round_index"])
        self.sim_time_s = float(state["sim_time_s"])
        if self.fairness is not None:
            if state.get("fairness") is None:
                raise ValueError("the checkpoint has no fairness state: it was written by a run without "
                                 "fl.fairness, so it cannot resume one with it")
            self.fairness.load_state_dict(state["fairness"])
        if self.cali3f is not None:
            if state.get("cali3f") is None:
                raise ValueError("the checkpoint has no Cali3F state: it was written by a run with another fl.strategy")
            self.cali3f.load_state_dict(state["cali3f"])
