"""Per-round result rows: what was selected, kept, dropped and failed per tier, the virtual
clock, the training loss and, on evaluation rounds, HR/NDCG overall and per tier."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Optional

import numpy as np

from cluster.fl.selection import RoundPlan

if TYPE_CHECKING:  # for the annotation only: the server module loads every strategy and model family
    from cluster.fl.server_core import FleetView


@dataclass(frozen=True)
class RoundTiming:
    """``sim_time_s``: the virtual clock since the run started, this round included; ``wall_s``:
    the wall seconds the round took."""

    sim_time_s: float
    wall_s: float


def per_tier_counts(clients: np.ndarray, tier_of_user: np.ndarray, n_tiers: int) -> np.ndarray:
    return np.bincount(tier_of_user[clients], minlength=n_tiers) if len(clients) else np.zeros(n_tiers, np.int64)


def round_record(
    plan: RoundPlan,
    merged,
    failed: np.ndarray,
    fleet: FleetView,
    timing: RoundTiming,
    evaluation: Optional[dict[str, float]],
    upload: Optional[dict] = None,
) -> dict:
    """One flat row (Parquet- and JSON-friendly), counts per tier of ``fleet``. ``merged``: the
    kept clients' merged uploads (clients, n_samples, loss); ``upload``: the model's upload
    statistics (``ModelOps.upload_stats``). ``failed``: kept clients whose worker died mid-round;
    they are counted, never silently lost, and their updates are not used."""
    tier_of_user, tier_names = fleet.tier_of_user, fleet.tiers.names
    n_tiers = len(tier_names)
    counts = {
        "selected": per_tier_counts(plan.selected, tier_of_user, n_tiers),
        "dropped": per_tier_counts(plan.dropped_clients, tier_of_user, n_tiers),
        "failed": per_tier_counts(failed, tier_of_user, n_tiers),
        "aggregated": per_tier_counts(merged.clients, tier_of_user, n_tiers),
    }
    row: dict = {
        "round": plan.round_index + 1,
        "sim_round_s": plan.duration_s,
        "sim_time_s": timing.sim_time_s,
        "wall_s": timing.wall_s,
        "client_updates": int(len(merged.clients)),
        "client_updates_per_s": len(merged.clients) / timing.wall_s if timing.wall_s > 0 else float("nan"),
        "train_loss": merged.train_loss,
        **(upload or {}),
    }
    if plan.upload_bytes is not None:
        row["upload_mb"] = float(plan.upload_bytes[plan.kept].sum()) / 1e6
    for kind, per_tier in counts.items():
        row[kind] = int(per_tier.sum())
        for tier, name in enumerate(tier_names):
            row[f"{kind}_{name}"] = int(per_tier[tier])
    row.update(evaluation or {})
    return row
