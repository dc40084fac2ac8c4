"""Accuracy of served lists against each request's held-out item, and exposure over time.

NDCG is the standard one: DCG over the list divided by the ideal DCG of min(|relevant|, K)
relevant items at the top. FairSync's code instead divides by the ideal DCG over the number of
HITS, which makes any list with one hit score 1.0 and inflates the figure; we do not. With one
held-out item per request, Recall@K equals HR@K (both are reported, as the paper does)."""

from __future__ import annotations

import numpy as np


def list_metrics(served: np.ndarray, heldout: np.ndarray) -> dict[str, float]:
    """served (T, K) item rows (−1 = empty slot); heldout (T,) the one relevant item per request."""
    if len(served) == 0:
        return {"recall": 0.0, "ndcg": 0.0, "hr": 0.0}
    hit_at = served == heldout[:, None]
    hit = hit_at.any(axis=1)
    rank = np.argmax(hit_at, axis=1)
    dcg = np.where(hit, 1.0 / np.log2(rank + 2.0), 0.0)
    return {"recall": float(hit.mean()), "ndcg": float(dcg.mean()), "hr": float(hit.mean())}


def exposure_shortfall(exposure: np.ndarray, minimum: np.ndarray) -> float:
    """The worst group's delivered share of its minimum (1.0 = every target met)."""
    owed = minimum > 0
    return float(np.min(exposure[owed] / minimum[owed])) if owed.any() else 1.0
