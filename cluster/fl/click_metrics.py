"""Click-model evaluation: ROC AUC (scikit-learn's) overall and per tier, over the rows each tier's
clients hold."""

from __future__ import annotations

import numpy as np
from sklearn.metrics import roc_auc_score


def auc_or_nan(labels: np.ndarray, scores: np.ndarray) -> float:
    """AUC, or NaN when the rows hold a single class (AUC is undefined there)."""
    if len(labels) == 0 or labels.min() == labels.max():
        return float("nan")
    return float(roc_auc_score(labels, scores))


def auc_summary(owners: np.ndarray, labels: np.ndarray, scores: np.ndarray, tier_of_user: np.ndarray,
                tier_names: tuple[str, ...], prefix: str = "auc") -> dict[str, float]:
    """``prefix`` overall and ``prefix_<tier>`` per tier, plus the rows evaluated."""
    tiers = tier_of_user[owners]
    out = {prefix: auc_or_nan(labels, scores), f"{prefix}_rows": int(len(labels))}
    for tier, name in enumerate(tier_names):
        members = tiers == tier
        out[f"{prefix}_{name}"] = auc_or_nan(labels[members], scores[members])
    return out
