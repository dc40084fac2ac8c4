"""Ranking metrics under leave-one-out with sampled negatives, and their per-tier summaries."""

from __future__ import annotations

import numpy as np


def rank_metrics(scores: np.ndarray, k: int = 10) -> tuple[np.ndarray, np.ndarray]:
    """HR@k and NDCG@k per row of ``scores`` (N, 1 + n_negatives), the test item in column 0.

    A negative scoring equal to the test item ranks above it, and so does any NaN: ties or a
    diverged model never flatter the metric.
    """
    rank = (~(scores[:, 1:] < scores[:, :1])).sum(axis=1)
    hit = (rank < k).astype(np.float64)
    ndcg = np.where(rank < k, 1.0 / np.log2(rank + 2.0), 0.0)
    return hit, ndcg


def summarize(values: dict[str, np.ndarray], tiers: np.ndarray, tier_names: tuple[str, ...]) -> dict[str, float]:
    """Mean of each per-client metric overall and per tier, plus its std across clients."""
    out: dict[str, float] = {}
    for metric, per_client in values.items():
        out[metric] = float(per_client.mean()) if len(per_client) else float("nan")
        out[f"{metric}_std"] = float(per_client.std()) if len(per_client) else float("nan")
        for tier, name in enumerate(tier_names):
            members = per_client[tiers == tier]
            out[f"{metric}_{name}"] = float(members.mean()) if len(members) else float("nan")
    return out


def count_rate_by_tier(
    clients: np.ndarray,
    hits: np.ndarray,
    trials: np.ndarray,
    tier_of_user: np.ndarray,
    tier_names: tuple[str, ...],
    key: str,
) -> dict[str, float]:
    """``{key}`` overall and ``{key}_<tier>``: successes over trials, from per-client counts
    ``hits`` and ``trials`` (C,) of ``clients`` (C,), every trial weighing the same; ``{key}_pairs``
    the trials in all. The counts are integers, so each rate is the exact quotient: the mean of
    the 0/1 outcomes themselves, bit for bit, without a value per trial."""
    hits, trials = np.asarray(hits, np.int64), np.asarray(trials, np.int64)
    tiers = tier_of_user[clients]

    def rate(members: np.ndarray) -> float:
        n = int(trials[members].sum())
        return int(hits[members].sum()) / n if n else float("nan")

    out = {key: rate(np.ones(len(clients), bool)), f"{key}_pairs": int(trials.sum())}
    for tier, name in enumerate(tier_names):
        out[f"{key}_{name}"] = rate(tiers == tier)
    return out


def evaluation_summary(
    clients: np.ndarray, hit: np.ndarray, ndcg: np.ndarray, tier_of_user: np.ndarray, tier_names: tuple[str, ...]
) -> dict[str, float]:
    """hr10 / ndcg10 overall, per tier (hr10_low ...) and their std across clients (hr10_std)."""
    summary = summarize({"hr10": hit, "ndcg10": ndcg}, tier_of_user[clients], tier_names)
    summary["evaluated_clients"] = int(len(clients))
    return summary
