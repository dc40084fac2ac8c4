"""Baseline exposure policies to compare FairSync with. Each sets a per-group offset μ that the
shards subtract from relevance (the same s − μ_g machinery as FairSync's dual), and has the
same interface as ``DualVector``: ``mu``, ``version``, ``exposure``, ``requests``,
``observe(n_g, n_requests) -> changed``, ``state_dict`` / ``load_state_dict``.

- ``TopK``: μ = 0, plain relevance.
- ``KNeighbor`` (FairDiverse's k-neighbor re-ranker): each request may only take items of the
  ``nearest_k`` groups with the least exposure so far; the others are masked by a large μ.
- ``MinRegularizer`` (P-MMF's min-regularizer, Xu et al. WWW 2023, as in FairDiverse): the
  score gets λ·(min_h B_h − B_g)/(w_g·T), i.e. μ_g = λ·(B_g − min_h B_h)/(w_g·T) with B the
  exposure so far and w_g = 1 — a group is penalised in proportion to how far it is ahead.

Both heuristics update after every ``observe`` call (every request, as in FairDiverse; with
batched requests, after every batch).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from cluster.retrieval.fairsync import ExposureTargets

MASK = 1e3  # kept small enough that float32 scores keep ~1e-4 resolution after the shift


@dataclass
class _CountingPolicy:
    targets: ExposureTargets
    exposure: np.ndarray = field(init=False)
    requests: int = field(init=False, default=0)
    version: int = field(init=False, default=0)

    def __post_init__(self) -> None:
        self.exposure = np.zeros(len(self.targets.m))
        self._mu = np.zeros(len(self.targets.m))

    @property
    def mu(self) -> np.ndarray:
        return self._mu.copy()

    def observe(self, n_g: np.ndarray, n_requests: int = 1) -> bool:
        self.exposure += n_g
        self.requests += n_requests
        new_mu = self._offsets()
        if np.array_equal(new_mu, self._mu):
            return False
        self._mu = new_mu
        self.version += 1
        return True

    def _offsets(self) -> np.ndarray:
        return self._mu

    def state_dict(self) -> dict:
        return {
            "mu": self._mu.copy(),
            "exposure": self.exposure.copy(),
            "requests": self.requests,
            "version": self.version,
        }

    def load_state_dict(self, state: dict) -> None:
        self._mu = np.array(state["mu"], dtype=np.float64)
        self.exposure = np.array(state["exposure"], dtype=np.float64)
        self.requests = int(state["requests"])
        self.version = int(state["version"])


class TopK(_CountingPolicy):
    """Relevance only; counts exposure so its ESP can be reported."""


@dataclass
class KNeighbor(_CountingPolicy):
    nearest_k: int = 1

    def __post_init__(self) -> None:
        super().__post_init__()
        self._mu = self._offsets()

    def _offsets(self) -> np.ndarray:
        worst_off = np.argsort(self.exposure, kind="stable")[: self.nearest_k]
        mu = np.full(len(self.exposure), MASK)
        mu[worst_off] = 0.0
        return mu


@dataclass
class MinRegularizer(_CountingPolicy):
    strength: float = 1.0

    def _offsets(self) -> np.ndarray:
        return self.strength * (self.exposure - self.exposure.min()) / self.targets.horizon
