"""The virtual clock: how long each selected phone takes this round (its tier's latency profile
and what the model family says the round costs it), which phones the server waits for (the
fastest ``n_keep``, within the deadline), how long the round lasts, and the simulated time since
the run started. Wall time never enters it, so a run's simulated figures do not depend on the
machine it ran on."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np

from cluster.fl.selection import RoundPlan
from cluster.rng import stream
from cluster.tiers.latency import RoundWork, TierTable, sample_round_latency


@dataclass(frozen=True)
class RoundCosts:
    """Per selected client (k,): samples it computes over, bytes it downloads and uploads, and
    the share of the full model's work it does; ``fixed_s``: seconds every client spends besides
    (a protocol's extra message rounds)."""

    work_samples: np.ndarray
    download_bytes: np.ndarray
    upload_bytes: np.ndarray
    compute_fraction: np.ndarray
    fixed_s: float = 0.0


def keep_fastest(latency_s: np.ndarray, n_keep: int, deadline_s: Optional[float]) -> np.ndarray:
    """Mask of the clients kept: the ``n_keep`` fastest, and only those within the deadline.
    Ties in latency keep the earlier-selected client."""
    order = np.argsort(latency_s, kind="stable")[:n_keep]
    kept = np.zeros(len(latency_s), dtype=bool)
    kept[order] = True
    if deadline_s is not None:
        kept &= latency_s <= deadline_s
    return kept


class VirtualClock:
    """Latencies are drawn from their own random stream per round, so they do not depend on
    anything else the run draws (selection, local SGD)."""

    def __init__(self, tiers: TierTable, seed: int, local_epochs: int, n_keep: int, deadline_s: Optional[float]):
        self.tiers = tiers
        self.seed = seed
        self.local_epochs = local_epochs
        self.n_keep = n_keep
        self.deadline_s = deadline_s
        self.sim_time_s = 0.0

    def plan(
        self,
        round_index: int,
        selected: np.ndarray,
        tiers: np.ndarray,
        costs: RoundCosts,
        n_keep: Optional[int] = None,
    ) -> RoundPlan:
        """``n_keep``: how many of the fastest the round keeps (default: the clock's, n)."""
        work = RoundWork(
            costs.work_samples,
            model_bytes=costs.download_bytes,
            upload_bytes=costs.upload_bytes,
            local_epochs=self.local_epochs,
            compute_fraction=costs.compute_fraction,
        )
        latency = sample_round_latency(self.tiers, tiers, work, rng=stream(self.seed, "latency", round_index))
        total_s = latency.total_s + costs.fixed_s
        kept = keep_fastest(total_s, self.n_keep if n_keep is None else n_keep, self.deadline_s)
        return RoundPlan(round_index, selected, total_s, kept, costs.upload_bytes)

    def advance(self, plan: RoundPlan) -> None:
        """The round is over when its slowest kept client has reported."""
        self.sim_time_s += plan.duration_s
