"""Which clients train in a round: epoch-wise selection without repeats and over-selection.
Which of them the server waits for is the virtual clock's (``clock.py``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Protocol

import numpy as np


class Sampler(Protocol):
    """How a round's clients are drawn; its state is checkpointed with the server's."""

    def draw(self, k: int) -> np.ndarray: ...

    def state_dict(self) -> dict: ...

    def load_state_dict(self, state: dict) -> None: ...


class EpochSampler:
    """Draws clients so that none is drawn again before every eligible client was drawn once
    (an epoch, as in RF²); a draw that spans two epochs never repeats a client."""

    def __init__(self, eligible: np.ndarray, rng: np.random.Generator):
        if len(eligible) == 0:
            raise ValueError("no eligible clients to select from")
        self.eligible = np.asarray(eligible, dtype=np.int64)
        self.rng = rng
        self.order = rng.permutation(self.eligible)
        self.position = 0
        self.epoch = 0

    def draw(self, k: int) -> np.ndarray:
        k = min(k, len(self.eligible))
        taken = self.order[self.position : self.position + k]
        self.position += len(taken)
        if len(taken) < k:
            self.epoch += 1
            fresh = self.rng.permutation(self.eligible)
            # Clients just drawn at the end of the old epoch go last in the new one.
            fresh = np.concatenate([fresh[~np.isin(fresh, taken)], fresh[np.isin(fresh, taken)]])
            self.order, self.position = fresh, k - len(taken)
            taken = np.concatenate([taken, fresh[: self.position]])
        return taken

    def state_dict(self) -> dict:
        return {
            "order": self.order.copy(),
            "position": self.position,
            "epoch": self.epoch,
            "rng": self.rng.bit_generator.state,
        }

    def load_state_dict(self, state: dict) -> None:
        self.order = np.asarray(state["order"], dtype=np.int64)
        self.position = int(state["position"])
        self.epoch = int(state["epoch"])
        self.rng.bit_generator.state = state["rng"]


class PoissonSampler:
    """Draws each eligible client independently with probability k / (eligible clients), so a
    round's cohort varies in size: the sampling differential privacy's accountant assumes (a
    client's inclusion is independent of every other's and of past rounds)."""

    def __init__(self, eligible: np.ndarray, rng: np.random.Generator):
        if len(eligible) == 0:
            raise ValueError("no eligible clients to select from")
        self.eligible = np.asarray(eligible, dtype=np.int64)
        self.rng = rng

    def draw(self, k: int) -> np.ndarray:
        rate = min(1.0, k / len(self.eligible))
        return self.eligible[self.rng.random(len(self.eligible)) < rate]

    def state_dict(self) -> dict:
        return {"rng": self.rng.bit_generator.state}

    def load_state_dict(self, state: dict) -> None:
        self.rng.bit_generator.state = state["rng"]


@dataclass(frozen=True)
class RoundPlan:
    """selected: (k,) clients asked to train; latency_s: (k,) their simulated round latency;
    kept: mask (k,) of those whose update is used; the rest are dropped stragglers;
    upload_bytes: (k,) what each would upload, when known."""

    round_index: int
    selected: np.ndarray
    latency_s: np.ndarray
    kept: np.ndarray
    upload_bytes: Optional[np.ndarray] = None

    @property
    def kept_clients(self) -> np.ndarray:
        return self.selected[self.kept]

    @property
    def dropped_clients(self) -> np.ndarray:
        return self.selected[~self.kept]

    @property
    def duration_s(self) -> float:
        """The round lasts until its slowest kept client reports."""
        return float(self.latency_s[self.kept].max()) if self.kept.any() else 0.0


def n_to_select(clients_per_round: int, overselect: float) -> int:
    return int(np.ceil(clients_per_round * (1.0 + overselect) - 1e-9))
