"""FairSync (Xu et al., WWW 2024, arXiv 2402.10628): minimum amortized group exposure in
distributed retrieval through a dual vector μ over item groups.

Requests t = 1..T each take K items; group g must receive exposure e_g ≥ m_g over the horizon.
A request's list is the top-K by the adjusted score s − μ_{g(i)}; μ stays fixed for a batch of B
requests, then moves by the subgradient of the dual,

    ∂_g = −n_g + B·m_g/T + 1[g = argmax μ]·B·(T·K − Σm)/T        (full variant)
    ∂_g = −n_g + B·m_g/T,  with λ = −μ kept ≥ 0                    (projected variant)

where n_g is the number of slots group g got in the batch. The paper's code adds the target term
once per batch; it is scaled by B here so that a batch's target matches its B requests.

The projected variant is the default: exposure is a lower bound, so a group above its target is
never pushed below what relevance alone would give it (μ ≤ 0 only ever boosts).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

Variant = Literal["projected", "full"]


@dataclass(frozen=True)
class ExposureTargets:
    """m: (G,) minimum slots per group over ``horizon`` requests of ``k`` items each."""

    m: np.ndarray
    horizon: int
    k: int

    def __post_init__(self) -> None:
        m = np.asarray(self.m, dtype=np.float64)
        if (m < 0).any():
            raise ValueError("minimum exposures must be >= 0")
        if m.sum() > self.horizon * self.k:
            raise ValueError(
                f"infeasible exposure targets: sum of m = {m.sum():g} exceeds the {self.horizon} x {self.k} = "
                f"{self.horizon * self.k} slots of the horizon"
            )

    @classmethod
    def uniform(cls, per_group: float, n_groups: int, horizon: int, k: int) -> "ExposureTargets":
        return cls(np.full(n_groups, float(per_group)), horizon, k)


def adjusted_scores(scores: np.ndarray, item_groups: np.ndarray, mu: np.ndarray) -> np.ndarray:
    """s − μ_{g(i)}; scores (N, M) for M items whose groups are item_groups (M,)."""
    return scores - mu[item_groups]


def group_counts(served_groups: np.ndarray, n_groups: int) -> np.ndarray:
    """n_g: (G,) how many served slots (any shape of group ids) went to each group."""
    return np.bincount(np.asarray(served_groups).ravel(), minlength=n_groups).astype(np.float64)


def slots_per_group(served_items: np.ndarray, item_groups: np.ndarray, n_groups: int) -> np.ndarray:
    """n_g from served item ids (any shape) and every item's group."""
    return group_counts(item_groups[np.asarray(served_items).ravel()], n_groups)


def dual_subgradient(
    n_g: np.ndarray, batch: int, targets: ExposureTargets, mu: np.ndarray, variant: Variant
) -> np.ndarray:
    gradient = -n_g + batch * targets.m / targets.horizon
    if variant == "full":
        spare = targets.horizon * targets.k - targets.m.sum()
        gradient = gradient + (np.arange(len(mu)) == np.argmax(mu)) * batch * spare / targets.horizon
    return gradient


@dataclass
class DualVector:
    """μ with its optimizer (torch Adam or SGD), its batch accounting and exposure counters."""

    targets: ExposureTargets
    batch: int
    lr: float
    optimizer: Literal["adam", "sgd"] = "adam"
    variant: Variant = "projected"
    exposure: np.ndarray = field(init=False)
    pending: np.ndarray = field(init=False)
    requests_in_batch: int = field(init=False, default=0)
    requests: int = field(init=False, default=0)
    version: int = field(init=False, default=0)

    def __post_init__(self) -> None:
        n_groups = len(self.targets.m)
        self.exposure = np.zeros(n_groups)
        self.pending = np.zeros(n_groups)
        self._param = None
        self._opt = None

    def _optimizer(self):
        """μ as a torch parameter and its optimizer, built on first use: the Serve ingress builds
        this object only to hand it to the dual-vector actor, and torch would add ~2 s to the
        start of every process that merely holds it (μ starts at 0 either way)."""
        if self._opt is None:
            import torch

            self._param = torch.nn.Parameter(torch.zeros(len(self.targets.m), dtype=torch.float64))
            factory = {"adam": torch.optim.Adam, "sgd": torch.optim.SGD}[self.optimizer]
            self._opt = factory([self._param], lr=self.lr)
        return self._param, self._opt

    @property
    def mu(self) -> np.ndarray:
        if self._param is None:
            return np.zeros(len(self.targets.m))
        return self._param.detach().numpy().copy()

    def observe(self, n_g: np.ndarray, n_requests: int = 1) -> bool:
        """Count served slots per group; step μ when a batch of B requests is complete.
        Returns True when μ changed (its version went up)."""
        self.exposure += n_g
        self.pending += n_g
        self.requests += n_requests
        self.requests_in_batch += n_requests
        if self.requests_in_batch < self.batch:
            return False
        import torch

        param, optimizer = self._optimizer()
        gradient = dual_subgradient(self.pending, self.requests_in_batch, self.targets, self.mu, self.variant)
        optimizer.zero_grad()
        param.grad = torch.as_tensor(gradient, dtype=torch.float64)
        optimizer.step()
        if self.variant == "projected":
            with torch.no_grad():
                param.clamp_(max=0.0)  # λ = −μ ≥ 0
        self.pending[:] = 0
        self.requests_in_batch = 0
        self.version += 1
        return True

    def state_dict(self) -> dict:
        # torch's state_dict holds the live moment tensors and load_state_dict keeps them: a
        # snapshot restored in the same process would otherwise move with the original.
        optimizer = copy.deepcopy(self._optimizer()[1].state_dict())
        return {
            "mu": self.mu,
            "optimizer": optimizer,
            "exposure": self.exposure.copy(),
            "pending": self.pending.copy(),
            "requests": self.requests,
            "requests_in_batch": self.requests_in_batch,
            "version": self.version,
        }

    def load_state_dict(self, state: dict) -> None:
        import torch

        param, optimizer = self._optimizer()
        with torch.no_grad():
            param.copy_(torch.as_tensor(state["mu"], dtype=torch.float64))
        optimizer.load_state_dict(state["optimizer"])
        self.exposure = np.array(state["exposure"], dtype=np.float64)
        self.pending = np.array(state["pending"], dtype=np.float64)
        self.requests = int(state["requests"])
        self.requests_in_batch = int(state["requests_in_batch"])
        self.version = int(state["version"])


def exposure_satisfaction(exposure: np.ndarray, targets: ExposureTargets, requests: int) -> dict[str, float]:
    """How far the minimum exposures are met after ``requests`` of the horizon, pro rata
    (m̃ = m · requests / T, so at the horizon m̃ = m): ``esp`` = share of groups with e_g ≥ m̃_g
    (FairSync's ESP), ``fill`` = Σ_g min(e_g, m̃_g) / Σ_g m̃_g (how much of the owed exposure
    was delivered: 1.0 = every target met, and it says how far a missed target fell short)."""
    due = targets.m * requests / targets.horizon
    if due.sum() == 0:
        return {"esp": 1.0, "fill": 1.0}
    return {
        "esp": float(np.mean(exposure >= due - 1e-9)),
        "fill": float(np.minimum(exposure, due).sum() / due.sum()),
    }
