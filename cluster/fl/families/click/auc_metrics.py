"""Click-model evaluation: ROC AUC (scikit-learn's) and accuracy (click predicted when p ≥ ½;
the per-sample correctness CEAG constrains) overall and per tier, over the rows each tier's
clients hold."""

from __future__ import annotations

import numpy as np

from cluster.fairness.ranking import pair_rate_by_tier


def auc_or_nan(labels: np.ndarray, scores: np.ndarray) -> float:
    """AUC, or NaN when the rows hold a single class (AUC is undefined there)."""
    if len(labels) == 0 or labels.min() == labels.max():
        return float("nan")
    # Imported here, not at the top: scikit-learn costs 1-2 s per process, which every Ray actor
    # importing this module paid at start, whether or not it ever evaluated.
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(labels, scores))


def auc_summary(
    owners: np.ndarray,
    labels: np.ndarray,
    scores: np.ndarray,
    tier_of_user: np.ndarray,
    tier_names: tuple[str, ...],
    split: str = "test",
) -> dict[str, float]:
    """AUC and accuracy overall (``auc``, ``acc``) and per tier (``auc_<tier>`` ...), plus the rows
    evaluated; keys carry ``_train`` after the metric for the train split (``auc_train_low``)."""
    tiers = tier_of_user[owners]
    correct = ((scores >= 0.5) == (labels >= 0.5)).astype(np.float64)
    tag = "" if split == "test" else f"_{split}"
    out = {f"auc{tag}": auc_or_nan(labels, scores), f"acc{tag}": _mean(correct), f"auc{tag}_rows": int(len(labels))}
    for tier, name in enumerate(tier_names):
        members = tiers == tier
        out[f"auc{tag}_{name}"] = auc_or_nan(labels[members], scores[members])
        out[f"acc{tag}_{name}"] = _mean(correct[members])
    if split == "train":  # CEAG's pairwise reference (fl.fairness.measure: pairwise)
        out.update(pair_rate_by_tier(owners, labels, scores, tier_of_user, tier_names, "pair_train"))
    return out


def _mean(values: np.ndarray) -> float:
    return float(values.mean()) if len(values) else float("nan")
