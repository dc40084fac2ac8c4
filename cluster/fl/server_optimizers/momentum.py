"""FedAvgM (Hsu et al. 2019): server momentum over the averaged updates, m = β·m + Δ; θ += η·m."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from cluster.fl.server_optimizers.base import Arrays, copied, loaded


@dataclass
class Momentum:
    lr: float
    beta: float = 0.9
    velocity: Arrays = field(default_factory=dict)

    def step(self, params: Arrays, delta: Arrays) -> None:
        for name, update in delta.items():
            m = self.velocity.setdefault(name, np.zeros_like(update))
            m *= np.float32(self.beta)
            m += update
            params[name] += self.lr * m

    def state_dict(self) -> dict:
        return copied(self.velocity)

    def load_state_dict(self, state: dict) -> None:
        self.velocity = loaded(state)


OPTIMIZER = Momentum
