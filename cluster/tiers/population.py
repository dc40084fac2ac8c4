"""The simulated fleet: every client's tier, its training data shard and its latency profile."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from cluster.data.types import Interactions
from cluster.tiers.latency import TierTable


@dataclass(frozen=True)
class Population:
    """One simulated client per user.

    tier_of_user: (n_users,) int8 tier id per client; train: the interactions clients train on;
    train_indptr (n_users+1,), train_order (n_train,): client u's rows of ``train`` are
    ``train_order[train_indptr[u]:train_indptr[u+1]]`` (oldest first).
    """

    tiers: TierTable
    tier_of_user: np.ndarray
    train: Interactions
    train_indptr: np.ndarray
    train_order: np.ndarray

    @classmethod
    def build(cls, tiers: TierTable, tier_of_user: np.ndarray, train: Interactions) -> "Population":
        if len(tier_of_user) != train.n_users:
            raise ValueError(f"tier_of_user has {len(tier_of_user)} entries for {train.n_users} users")
        indptr, order = train.user_order()
        return cls(tiers, tier_of_user, train, indptr, order)

    @property
    def n_clients(self) -> int:
        return len(self.tier_of_user)

    def samples_per_client(self) -> np.ndarray:
        return np.diff(self.train_indptr)

    def client_rows(self, client: int) -> np.ndarray:
        return self.train_order[self.train_indptr[client] : self.train_indptr[client + 1]]

    def tier_summary(self) -> list[dict]:
        samples = self.samples_per_client()
        rows = []
        for tier, name in enumerate(self.tiers.names):
            members = self.tier_of_user == tier
            rows.append(
                {
                    "tier": name,
                    "clients": int(members.sum()),
                    "train_samples": int(samples[members].sum()),
                    "median_samples": float(np.median(samples[members])) if members.any() else 0.0,
                    "compute_ms_per_sample": float(1e3 * self.tiers.compute_mean[tier]),
                    "upload_mbps": float(self.tiers.upload_mean[tier]),
                }
            )
        return rows
