"""CEAG in the aggregator, one round at a time (the federated placement of
``cluster/fairness/ceag.py``): the kept clients' uploaded per-sample correctness goes into the
per-tier replay buffers in client-id order, the multipliers take their dual step on the true
excess gaps, and the round's FedAvg weights become the Lagrangian's primal step."""

from __future__ import annotations

from typing import Optional

import numpy as np

from cluster.fairness.ceag import TierMultipliers, aggregation_weights, dual_update
from cluster.fairness.replay import ReplayBuffers
from configs.schema import FairnessConfig


class CEAGController:
    """reference_accuracy: A_t(β_0) (T,) of the unoptimized model on the train samples;
    tier_weights: (T,) each tier's train samples in the population (A = their weighted mean)."""

    def __init__(self, cfg: FairnessConfig, reference_accuracy: np.ndarray, tier_weights: np.ndarray,
                 tier_names: tuple[str, ...]):
        self.reference = np.asarray(reference_accuracy, np.float64)
        self.tier_weights = np.asarray(tier_weights, np.float64)
        self.tier_names = tier_names
        self.multipliers = TierMultipliers(len(tier_names), cfg.dual_lr, cfg.epsilon)
        self.buffers = ReplayBuffers(len(tier_names), cfg.buffer_size)

    def round_weights(self, clients: np.ndarray, n_samples: np.ndarray, correct: np.ndarray,
                      tier_of_user: np.ndarray) -> tuple[Optional[np.ndarray], dict]:
        """Aggregation weights (C,) for the merged clients (ascending ids) and the round's
        record fields (λ and ψ per tier); (None, {}) when no client reported."""
        if len(clients) == 0:
            return None, {}
        client_tiers = tier_of_user[clients]
        self.buffers.push(correct, np.repeat(client_tiers, n_samples))
        report = dual_update(self.multipliers, self.buffers, self.reference, self.tier_weights)
        weights = aggregation_weights(n_samples, client_tiers, report.lambdas)
        record = {}
        for tier, name in enumerate(self.tier_names):
            record[f"lambda_{name}"] = float(report.lambdas[tier])
            record[f"psi_{name}"] = float(report.gaps[tier])
        return weights, record

    def state_dict(self) -> dict:
        return {"multipliers": self.multipliers.state_dict(), "buffers": self.buffers.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self.multipliers.load_state_dict(state["multipliers"])
        self.buffers.load_state_dict(state["buffers"])
