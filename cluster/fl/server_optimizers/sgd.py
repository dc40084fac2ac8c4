"""Server SGD: θ += η·Δ. With η = 1 the global model is the clients' average (FedAvg)."""

from __future__ import annotations

from dataclasses import dataclass

from cluster.fl.server_optimizers.base import Arrays


@dataclass
class SGD:
    lr: float

    def step(self, params: Arrays, delta: Arrays) -> None:
        for name, update in delta.items():
            params[name] += self.lr * update

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass


OPTIMIZER = SGD
