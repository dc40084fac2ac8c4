"""Ditto's device half: each phone keeps a personal dense part v, starting at w⁰ as the server's
model does, steps it after its FedAvg pass toward its own data and the global model it received,

    v ← v − η (∇F_k(v) + λ (v − w))        (Alg. 1, line 7; ``cluster/fl/proximal.py``),

and is served by it. How the step runs on a model is the family's (``LocalPass.personal_step``)."""

from __future__ import annotations

from typing import Optional

import numpy as np

from cluster.fl.strategies.base import DeviceHalf
from cluster.fl.types import ClusterView

PREFIX = "personal."


class PersonalModels(DeviceHalf):
    def __init__(self, lam: float):
        self.lam = lam

    def initial_state(self, core) -> dict[str, np.ndarray]:
        start = core.initial_params()
        return {PREFIX + n: np.repeat(start[n][None], core.n_clients, axis=0) for n in core.spec.dense_shapes()}

    def after_local(self, core, local, rows, settings, result):
        personal = {n: core.state[PREFIX + n][rows] for n in core.spec.dense_shapes()}
        for name, value in local.personal_step(personal, self.lam).items():
            core.state[PREFIX + name][rows] = value
        return result

    def served_dense(self, core, rows: np.ndarray, clusters: Optional[ClusterView]) -> dict[str, np.ndarray]:
        return {n: core.state[PREFIX + n][rows] for n in core.spec.dense_shapes()}
