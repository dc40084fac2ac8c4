"""Per-tier replay buffers for CEAG (Hashemizadeh et al. 2023, "Replay buffers" in the section
on solving the constrained problem; Algorithm 1): the last k per-sample values (correctness of
the optimized model) of each tier, in one ring per tier.

A tier's accuracy estimated from one round's few uploads swings from round to round; the
multiplier would chase that noise. Averaging the last k samples lowers the variance, and a
tier's multiplier waits until its ring is full so that an estimate from a handful of samples
never moves it (the paper uses k = 40).

The rings are filled in the order values are pushed; the aggregator pushes uploads in client-id
order, so the content does not depend on how clients were spread over worker actors. Two
instances pushed with the same tiers in the same order stay aligned slot by slot — e.g. one for
the optimized model's correctness and one for the reference model's on the same samples.
"""

from __future__ import annotations

import numpy as np


class ReplayBuffers:
    """``n_tiers`` rings of capacity ``size``; storage (n_tiers, size), float64."""

    def __init__(self, n_tiers: int, size: int) -> None:
        if n_tiers <= 0 or size <= 0:
            raise ValueError(f"need n_tiers > 0 and size > 0, got {n_tiers}, {size}")
        self.size = size
        self.values = np.zeros((n_tiers, size), np.float64)
        # next slot to write and number of slots filled, per tier
        self.cursor = np.zeros(n_tiers, np.int64)
        self.count = np.zeros(n_tiers, np.int64)

    @property
    def n_tiers(self) -> int:
        return self.values.shape[0]

    def push(self, values: np.ndarray, tiers: np.ndarray) -> None:
        """Append ``values`` (N,) to the rings of ``tiers`` (N,) in array order; a full ring
        overwrites its oldest entries."""
        values = np.asarray(values, np.float64)
        tiers = np.asarray(tiers, np.int64)
        if values.shape != tiers.shape or values.ndim != 1:
            raise ValueError(f"values and tiers must be (N,) alike, got {values.shape} and {tiers.shape}")
        if len(tiers) and (tiers.min() < 0 or tiers.max() >= self.n_tiers):
            raise ValueError(f"tier index out of range [0, {self.n_tiers})")
        for tier in np.unique(tiers):
            # Only the newest `size` values can survive this push; older ones would be overwritten.
            incoming = values[tiers == tier][-self.size :]
            slots = (self.cursor[tier] + np.arange(len(incoming))) % self.size
            self.values[tier, slots] = incoming
            self.cursor[tier] = (self.cursor[tier] + len(incoming)) % self.size
            self.count[tier] = min(self.size, self.count[tier] + len(incoming))

    def full(self) -> np.ndarray:
        """(n_tiers,) bool: the ring holds ``size`` values."""
        return self.count == self.size

    def means(self) -> np.ndarray:
        """(n_tiers,) mean of each ring's filled slots; NaN for an empty ring."""
        filled = np.arange(self.size)[None, :] < self.count[:, None]
        sums = np.where(filled, self.values, 0.0).sum(axis=1)
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(self.count > 0, sums / self.count, np.nan)

    def ordered(self, tier: int) -> np.ndarray:
        """The filled values of one tier, oldest first."""
        start = self.cursor[tier] if self.count[tier] == self.size else 0
        return np.roll(self.values[tier], -start)[: self.count[tier]].copy()

    def state_dict(self) -> dict:
        return {
            "size": self.size,
            "values": self.values.copy(),
            "cursor": self.cursor.copy(),
            "count": self.count.copy(),
        }

    def load_state_dict(self, state: dict) -> None:
        if state["values"].shape != self.values.shape or state["size"] != self.size:
            raise ValueError(f"checkpoint buffers {state['values'].shape} do not match {self.values.shape}")
        self.values = np.array(state["values"], np.float64)
        self.cursor = np.array(state["cursor"], np.int64)
        self.count = np.array(state["count"], np.int64)
