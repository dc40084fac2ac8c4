"""What the aggregator does, as a plain class: plan a round (select, over-select, drop by
simulated latency), average what the kept clients uploaded, step the global model, advance the
virtual clock. The actor around it only moves data between this and the client workers."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from configs.schema import FLConfig
from cluster.fl.aggregation import ServerOptimizer, fedavg
from cluster.fl.local_training import LocalResult
from cluster.fl.selection import EpochSampler, RoundPlan, keep_fastest, n_to_select
from cluster.models.ncf import NCFSpec, init_global
from cluster.rng import stream
from cluster.tiers.latency import TierTable, sample_round_latency


@dataclass(frozen=True)
class FleetView:
    """What the server knows of the fleet: tier_of_user (n,), train_samples (n,) positives."""

    tiers: TierTable
    tier_of_user: np.ndarray
    train_samples: np.ndarray


def estimated_upload_bytes(spec: NCFSpec, samples: np.ndarray) -> np.ndarray:
    """A client uploads the item rows it touched (at most its sample count) and the dense weights."""
    return np.minimum(samples, spec.n_items) * spec.row_bytes() + spec.dense_bytes()


class FederatedServer:
    def __init__(self, cfg: FLConfig, spec: NCFSpec, fleet: FleetView, seed: int):
        self.cfg = cfg
        self.spec = spec
        self.fleet = fleet
        self.seed = seed
        generator = torch.Generator().manual_seed(seed)
        self.params = {name: t.numpy().astype(np.float32) for name, t in init_global(spec, generator).items()}
        self.optimizer = ServerOptimizer(cfg.server_optimizer, cfg.server_lr, cfg.server_eps)
        self.sampler = EpochSampler(np.flatnonzero(fleet.train_samples > 0), stream(seed, "selection"))
        self.round_index = 0
        self.sim_time_s = 0.0

    def plan_round(self) -> RoundPlan:
        cfg, fleet = self.cfg, self.fleet
        selected = self.sampler.draw(n_to_select(cfg.clients_per_round, cfg.overselect))
        samples = fleet.train_samples[selected] * (1 + cfg.negatives_per_positive)
        latency = sample_round_latency(
            fleet.tiers,
            fleet.tier_of_user[selected],
            samples,
            model_bytes=self.spec.model_bytes(),
            upload_bytes=estimated_upload_bytes(self.spec, samples),
            rng=stream(self.seed, "latency", self.round_index),
            local_epochs=cfg.local_epochs,
        )
        kept = keep_fastest(latency.total_s, cfg.clients_per_round, cfg.deadline_s)
        return RoundPlan(self.round_index, selected, latency.total_s, kept)

    def apply(self, plan: RoundPlan, merged: LocalResult) -> None:
        """Average the kept clients' uploads into the global model and close the round."""
        delta = fedavg(merged, self.spec)
        if delta:
            self.optimizer.step(self.params, delta)
        self.sim_time_s += plan.duration_s
        self.round_index += 1

    def state_dict(self) -> dict:
        return {
            "params": {k: v.copy() for k, v in self.params.items()},
            "optimizer": self.optimizer.state_dict(),
            "sampler": self.sampler.state_dict(),
            "round_index": self.round_index,
            "sim_time_s": self.sim_time_s,
        }

    def load_state_dict(self, state: dict) -> None:
        self.params = {k: np.array(v, dtype=np.float32) for k, v in state["params"].items()}
        self.optimizer.load_state_dict(state["optimizer"])
        self.sampler.load_state_dict(state["sampler"])
        self.round_index = int(state["round_index"])
        self.sim_time_s = float(state["sim_time_s"])
