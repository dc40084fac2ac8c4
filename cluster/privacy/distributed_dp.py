"""User-level differential privacy without a trusted server (distributed DP under secure
aggregation): each device clips its whole update to C and adds Gaussian noise of std σ·C/√m,
m = ``fl.clients_per_round``, so the secure sum of m survivors carries noise σ·C — the central
mechanism, with no party ever holding an unnoised update. A round whose survivors number s adds
noise σ·√(s/m)·C, and is accounted at that noise: fewer survivors spend more of the budget.

The fixed-point encoding rounds each device's noised entries to the field's grid; like the
continuous-Gaussian analyses it builds on, the accountant does not model that rounding (Kairouz
et al. 2021 replace the Gaussian with a discrete one to cover it)."""

from __future__ import annotations

import numpy as np

from cluster.privacy.accountant import epsilon_of_rounds, plan_budget
from configs.privacy_schema import DistributedDP


class DistributedDPAccount:
    """``n_eligible`` clients may be drawn, ``n_select`` in expectation each round (Poisson);
    ``denominator``: m."""

    def __init__(
        self, cfg: DistributedDP, n_clients: int, n_eligible: int, n_select: int, denominator: int, rounds: int
    ):
        self.clip_norm = cfg.clip_norm
        budget = plan_budget(cfg, n_clients, n_eligible, n_select, rounds)
        self.sampling_rate, self.delta, self.noise_multiplier = (
            budget.sampling_rate,
            budget.delta,
            budget.noise_multiplier,
        )
        self.denominator = denominator
        self.round_noise: list[float] = []

    @property
    def device_noise_std(self) -> float:
        """Each device's share of the noise, per entry."""
        return self.noise_multiplier * self.clip_norm / np.sqrt(self.denominator)

    def spend(self, survivors: int) -> dict:
        """Account a released round whose sum holds ``survivors`` devices' noise; its record fields."""
        self.round_noise.append(self.noise_multiplier * float(np.sqrt(survivors / self.denominator)))
        return {
            "dp_epsilon": epsilon_of_rounds(self.sampling_rate, self.round_noise, self.delta),
            "dp_delta": self.delta,
            "dp_noise_multiplier": self.round_noise[-1],
            "dp_sampling_rate": self.sampling_rate,
        }

    def state_dict(self) -> dict:
        return {"round_noise": list(self.round_noise)}

    def load_state_dict(self, state: dict) -> None:
        self.round_noise = [float(v) for v in state["round_noise"]]
