"""FedYogi (Reddi et al. 2021, Algorithm 2): FedAdam with an additive second moment,
v −= (1−β₂)·Δ²·sign(v − Δ²), so v grows as fast as Δ² does but shrinks only slowly."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from cluster.fl.server_optimizers.adam import Adam


@dataclass
class Yogi(Adam):
    def _second_moment(self, v: np.ndarray, update: np.ndarray) -> None:
        squared = update * update
        v -= np.float32(1 - self.beta2) * squared * np.sign(v - squared)


OPTIMIZER = Yogi
