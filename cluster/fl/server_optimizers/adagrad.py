"""FedAdagrad (Reddi et al. 2021), as RF² trains its click models: v += Δ²; θ += η·Δ / (√v + τ).
v starts at 0."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from cluster.fl.server_optimizers.base import Arrays, copied, loaded


@dataclass
class Adagrad:
    lr: float
    tau: float = 1e-3
    accumulators: Arrays = field(default_factory=dict)

    def step(self, params: Arrays, delta: Arrays) -> None:
        for name, update in delta.items():
            v = self.accumulators.setdefault(name, np.zeros_like(update))
            v += update * update
            params[name] += self.lr * update / (np.sqrt(v) + self.tau)

    def state_dict(self) -> dict:
        return copied(self.accumulators)

    def load_state_dict(self, state: dict) -> None:
        self.accumulators = loaded(state)


OPTIMIZER = Adagrad
