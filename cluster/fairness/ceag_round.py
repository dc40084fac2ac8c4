"""CEAG in the aggregator, one round at a time (the federated placement of
``cluster/fairness/ceag.py``): the kept clients' uploaded per-sample correctness goes into the
per-tier replay buffers in client-id order, the multipliers take their dual step on the true
excess gaps, and the round's FedAvg weights become the Lagrangian's primal step."""

from __future__ import annotations

from typing import Optional

import numpy as np

from cluster.fairness.ceag import TierMultipliers, aggregation_weights, buffered_gaps
from cluster.fairness.replay import ReplayBuffers
from cluster.rng import stream
from configs.schema import CEAGConfig


class CEAGController:
    """reference_accuracy: A_t(β_0) (T,) of the unoptimized model on the train samples;
    tier_weights: (T,) each tier's train samples in the population (A = their weighted mean)."""

    def __init__(self, cfg: CEAGConfig, reference_accuracy: np.ndarray, tier_weights: np.ndarray,
                 tier_names: tuple[str, ...], seed: int = 0):
        self.seed = seed
        self.reference = np.asarray(reference_accuracy, np.float64)
        self.tier_weights = np.asarray(tier_weights, np.float64)
        self.tier_names = tier_names
        self.multipliers = TierMultipliers(len(tier_names), cfg.dual_lr, cfg.epsilon)
        self.buffers = ReplayBuffers(len(tier_names), cfg.buffer_size)

    def round_weights(self, clients: np.ndarray, n_samples: np.ndarray, correct: np.ndarray,
                      tier_of_user: np.ndarray, round_index: int = 0,
                      correct_counts: Optional[np.ndarray] = None) -> tuple[Optional[np.ndarray], dict]:
        """Aggregation weights (C,) for the merged clients (ascending ids) and the round's
        record fields (λ and ψ per tier); (None, {}) when no client reported. ``correct`` holds
        ``correct_counts`` (C,) values per client, in client order (default: one per sample).

        A round's samples arrive together, so they enter the rings in a seeded random order:
        in client-id order, a round larger than a ring would always keep the highest ids. Only
        tiers that reported this round take a dual step — a tier absent from the round has no
        update to reweight, and stepping on its stale ψ would wind λ up."""
        if len(clients) == 0:
            return None, {}
        client_tiers = tier_of_user[clients]
        sample_tiers = np.repeat(client_tiers, n_samples if correct_counts is None else correct_counts)
        order = stream(self.seed, "ceag_buffer", round_index).permutation(len(sample_tiers))
        self.buffers.push(np.asarray(correct)[order], sample_tiers[order])
        gaps = buffered_gaps(self.buffers, self.reference, self.tier_weights)
        reported = np.bincount(client_tiers, minlength=len(self.tier_names)) > 0
        self.multipliers.step(gaps, self.buffers.full() & reported)
        lambdas = self.multipliers.value
        weights = aggregation_weights(n_samples, client_tiers, lambdas)
        record = {}
        for tier, name in enumerate(self.tier_names):
            record[f"lambda_{name}"] = float(lambdas[tier])
            record[f"psi_{name}"] = float(gaps[tier])
        return weights, record

    def state_dict(self) -> dict:
        return {"multipliers": self.multipliers.state_dict(), "buffers": self.buffers.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self.multipliers.load_state_dict(state["multipliers"])
        self.buffers.load_state_dict(state["buffers"])
