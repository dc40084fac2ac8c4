"""Dual-vector actor ``dual-vector``: FairSync's μ, the exposure counters and a version; steps μ
every B requests, pushes it to the shards and persists its state so a restart continues."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np

from cluster.atomic import write_pickle
from cluster.retrieval.fairsync import DualVector, ExposureTargets, exposure_satisfaction


class DualVectorActor:
    def __init__(self, state_path: str, targets: ExposureTargets, batch: int, lr: float,
                 optimizer: str = "adam", variant: str = "projected", shards: list | None = None):
        self.state_path = Path(state_path)
        self.dual = DualVector(targets, batch, lr, optimizer, variant)
        self.shards = shards or []
        if self.state_path.exists():
            with self.state_path.open("rb") as handle:
                self.dual.load_state_dict(pickle.load(handle))

    def ready(self) -> int:
        return self.dual.version

    def current(self) -> tuple[np.ndarray, int]:
        return self.dual.mu, self.dual.version

    def observe(self, served_groups: np.ndarray, n_requests: int) -> tuple[np.ndarray, int]:
        """Count the groups of the served slots; on a batch boundary step μ, persist, push."""
        n_g = np.bincount(np.asarray(served_groups).ravel(), minlength=len(self.dual.targets.m)).astype(np.float64)
        changed = self.dual.observe(n_g, n_requests)
        self._persist()
        if changed:
            for shard in self.shards:
                shard.set_mu.remote(self.dual.mu, self.dual.version)  # fire and forget
        return self.dual.mu, self.dual.version

    def stats(self) -> dict:
        return {
            "exposure": self.dual.exposure.tolist(),
            "m": self.dual.targets.m.tolist(),
            "mu": self.dual.mu.tolist(),
            "mu_version": self.dual.version,
            "requests": self.dual.requests,
            **exposure_satisfaction(self.dual.exposure, self.dual.targets, self.dual.requests),
        }

    def _persist(self) -> None:
        write_pickle(self.state_path, self.dual.state_dict())
