"""CEAG in the aggregator, one round at a time (the federated placement of
``cluster/fairness/ceag.py``): the kept clients' uploaded per-sample correctness goes into the
per-tier replay buffers in client-id order, the multipliers take their dual step on the true
excess gaps, and λ enters the primal step: as the round's FedAvg weights (the loss-gap proxy), or
as coefficients on the pairwise-logistic gradients the clients uploaded beside their updates."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np

from cluster.fairness.ceag import TierMultipliers, aggregation_weights, buffered_gaps, pairwise_proxy_coefficients
from cluster.fairness.replay import ReplayBuffers
from cluster.rng import stream
from configs.schema import CEAGConfig


@dataclass(frozen=True)
class PrimalStep:
    """How λ enters this round's average. weights (C,): replace FedAvg's n_c/N (loss proxy);
    proxy_coefficients (C,): plain FedAvg plus Σ_c k_c × client c's uploaded proxy delta."""

    weights: Optional[np.ndarray] = None
    proxy_coefficients: Optional[np.ndarray] = None


class CEAGController:
    """reference_accuracy: A_t(β_0) (T,) of the unoptimized model on the train samples;
    tier_weights: (T,) each tier's count of the measure's units in the population (train samples
    for accuracy, train pairs for the pairwise measure; A = their weighted mean)."""

    def __init__(
        self,
        cfg: CEAGConfig,
        reference_accuracy: np.ndarray,
        tier_weights: np.ndarray,
        tier_names: tuple[str, ...],
        seed: int = 0,
    ):
        self.seed = seed
        self.reference = np.asarray(reference_accuracy, np.float64)
        self.tier_weights = np.asarray(tier_weights, np.float64)
        self.tier_names = tier_names
        self.proxy = cfg.proxy
        self.multipliers = TierMultipliers(len(tier_names), cfg.dual_lr, cfg.epsilon)
        self.buffers = ReplayBuffers(len(tier_names), cfg.buffer_size)

    def round_step(
        self,
        clients: np.ndarray,
        n_samples: np.ndarray,
        correct: np.ndarray,
        tier_of_user: np.ndarray,
        round_index: int = 0,
        correct_counts: Optional[np.ndarray] = None,
    ) -> tuple[Optional[PrimalStep], dict]:
        """The primal step for the merged clients (ascending ids) and the round's record fields
        (λ and ψ per tier); (None, {}) when no client reported. ``correct`` holds
        ``correct_counts`` (C,) values per client, in client order (default: one per sample);
        with the pairwise measure these are the client's pairs, so they also weight its
        pairwise-logistic gradient.

        A round's samples arrive together, so they enter the rings in a seeded random order:
        in client-id order, a round larger than a ring would always keep the highest ids. Only
        tiers that reported this round take a dual step — a tier absent from the round, or whose
        clients have no pair to report, has no update to reweight, and stepping on its stale ψ
        would wind λ up."""
        if len(clients) == 0:
            return None, {}
        client_tiers = tier_of_user[clients]
        counts = np.asarray(n_samples if correct_counts is None else correct_counts)
        sample_tiers = np.repeat(client_tiers, counts)
        order = stream(self.seed, "ceag_buffer", round_index).permutation(len(sample_tiers))
        self.buffers.push(np.asarray(correct)[order], sample_tiers[order])
        gaps = buffered_gaps(self.buffers, self.reference, self.tier_weights)
        reported = np.bincount(client_tiers, weights=counts, minlength=len(self.tier_names)) > 0
        self.multipliers.step(gaps, self.buffers.full() & reported)
        lambdas = self.multipliers.value
        if self.proxy == "pairwise_logistic":
            step = PrimalStep(proxy_coefficients=pairwise_proxy_coefficients(counts, client_tiers, lambdas))
        else:
            step = PrimalStep(weights=aggregation_weights(n_samples, client_tiers, lambdas))
        record = {}
        for tier, name in enumerate(self.tier_names):
            record[f"lambda_{name}"] = float(lambdas[tier])
            record[f"psi_{name}"] = float(gaps[tier])
        return step, record

    def state_dict(self) -> dict:
        return {"multipliers": self.multipliers.state_dict(), "buffers": self.buffers.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self.multipliers.load_state_dict(state["multipliers"])
        self.buffers.load_state_dict(state["buffers"])
