"""How different the tiers' tastes are: the heterogeneity a tier mapping produces."""

from __future__ import annotations

import itertools

import numpy as np
from scipy.spatial.distance import jensenshannon

from cluster.data.types import Interactions


def tier_click_distributions(
    clicks: Interactions, tier_of_user: np.ndarray, n_tiers: int, top_items: int
) -> np.ndarray:
    """(n_tiers, top_items): each tier's share of clicks over the overall most-clicked items."""
    counts = clicks.item_counts()
    top = np.lexsort((np.arange(clicks.n_items), -counts))[: min(top_items, clicks.n_items)]
    rank_of_item = np.full(clicks.n_items, -1, dtype=np.int64)
    rank_of_item[top] = np.arange(len(top))
    rank = rank_of_item[clicks.items]
    keep = rank >= 0
    tiers = tier_of_user[clicks.users[keep]].astype(np.int64)
    hist = np.bincount(tiers * len(top) + rank[keep], minlength=n_tiers * len(top)).reshape(n_tiers, len(top))
    totals = hist.sum(axis=1, keepdims=True)
    return np.divide(hist, totals, out=np.zeros(hist.shape), where=totals > 0)


def mean_js_divergence(distributions: np.ndarray) -> float:
    """Mean pairwise Jensen–Shannon divergence (base 2, so in [0, 1]) between rows.
    Rows with no mass (an empty tier) are left out."""
    rows = [d for d in distributions if d.sum() > 0]
    pairs = list(itertools.combinations(range(len(rows)), 2))
    if not pairs:
        return 0.0
    return float(np.mean([jensenshannon(rows[a], rows[b], base=2) ** 2 for a, b in pairs]))


def tier_heterogeneity(clicks: Interactions, tier_of_user: np.ndarray, n_tiers: int, top_items: int = 100) -> float:
    return mean_js_divergence(tier_click_distributions(clicks, tier_of_user, n_tiers, top_items))
