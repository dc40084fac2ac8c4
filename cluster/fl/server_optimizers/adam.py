"""FedAdam (Reddi et al. 2021, Algorithm 2): m = β₁·m + (1−β₁)·Δ; v = β₂·v + (1−β₂)·Δ²;
θ += η·m / (√v + τ). As in the paper, no bias correction; m and v start at 0."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from cluster.fl.server_optimizers.base import Arrays, copied, loaded


@dataclass
class Adam:
    lr: float
    beta1: float = 0.9
    beta2: float = 0.99
    tau: float = 1e-3
    first: Arrays = field(default_factory=dict)
    second: Arrays = field(default_factory=dict)

    def step(self, params: Arrays, delta: Arrays) -> None:
        for name, update in delta.items():
            m = self.first.setdefault(name, np.zeros_like(update))
            v = self.second.setdefault(name, np.zeros_like(update))
            m *= np.float32(self.beta1)
            m += np.float32(1 - self.beta1) * update
            self._second_moment(v, update)
            params[name] += self.lr * m / (np.sqrt(v) + self.tau)

    def _second_moment(self, v: np.ndarray, update: np.ndarray) -> None:
        v *= np.float32(self.beta2)
        v += np.float32(1 - self.beta2) * update * update

    def state_dict(self) -> dict:
        return {"m": copied(self.first), "v": copied(self.second)}

    def load_state_dict(self, state: dict) -> None:
        self.first, self.second = loaded(state["m"]), loaded(state["v"])


OPTIMIZER = Adam
