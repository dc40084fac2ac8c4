"""The pairwise form of AUC, inside each client's own samples: for every (clicked, not clicked)
pair of one client's samples, whether the model scores the click higher (1) or not (0; ties
count 0). Its mean over a tier's pairs is the tier's ranking quality as a client can compute it
on its own data, so CEAG can bound it (``fl.fairness.measure: pairwise``) where per-sample
accuracy at p ≥ ½ hardly separates the tiers."""

from __future__ import annotations

import numpy as np


def pairwise_bits(scores: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """One client's bits, (n_clicked × n_not_clicked,) float32, clicks in sample order, each
    against every non-click in sample order."""
    clicked = labels >= 0.5
    return (scores[clicked][:, None] > scores[~clicked][None, :]).astype(np.float32).ravel()


def positive_negative_bits(positive_scores: np.ndarray, negative_scores: np.ndarray) -> np.ndarray:
    """An NCF client's bits: its negatives are drawn r per positive, in positive order, so
    negative j belongs to positive j // r; (n_negatives,) float32, 1 where the positive scores
    strictly above that negative. Each bit is a draw of the client's within-client AUC."""
    per_positive = len(negative_scores) // max(len(positive_scores), 1)
    if per_positive * len(positive_scores) != len(negative_scores):
        raise ValueError(
            f"{len(negative_scores)} negatives are not a whole number per each of {len(positive_scores)} positives"
        )
    return (np.repeat(positive_scores, per_positive) > negative_scores).astype(np.float32)


def pair_counts(
    owners: np.ndarray, labels: np.ndarray, scores: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per client that has both a click and a non-click: (clients, correctly ordered pairs,
    pairs), without forming the pairs: each click counts the same client's non-clicks scored
    strictly below it."""
    order = np.lexsort((scores, owners))
    owner, score, negative = owners[order], scores[order], labels[order] < 0.5
    index = np.arange(len(order))
    new_owner = np.r_[True, owner[1:] != owner[:-1]]
    new_value = new_owner | np.r_[True, score[1:] != score[:-1]]
    owner_first = np.maximum.accumulate(np.where(new_owner, index, 0))
    value_first = np.maximum.accumulate(np.where(new_value, index, 0))  # ties start where their value does
    negatives_before: np.ndarray = np.cumsum(negative) - negative
    below: np.ndarray = negatives_before[value_first] - negatives_before[owner_first]
    clients, slot = np.unique(owner, return_inverse=True)
    correct = np.bincount(slot, weights=np.where(negative, 0, below), minlength=len(clients))
    n_neg = np.bincount(slot, weights=negative, minlength=len(clients))
    n_pos = np.bincount(slot, weights=~negative, minlength=len(clients))
    both = (n_neg > 0) & (n_pos > 0)
    return clients[both], correct[both], (n_pos * n_neg)[both]


def pair_rate_by_tier(
    owners: np.ndarray,
    labels: np.ndarray,
    scores: np.ndarray,
    tier_of_user: np.ndarray,
    tier_names: tuple[str, ...],
    key: str,
) -> dict[str, float]:
    """``{key}`` overall and ``{key}_<tier>``: correctly ordered pairs over pairs, within clients."""
    clients, correct, pairs = pair_counts(owners, labels, scores)
    tiers = tier_of_user[clients]

    def rate(members) -> float:
        return float(correct[members].sum() / pairs[members].sum()) if pairs[members].sum() else float("nan")

    out = {key: rate(np.ones(len(clients), bool))}
    for tier, name in enumerate(tier_names):
        out[f"{key}_{name}"] = rate(tiers == tier)
    return out


def bit_rate_by_tier(
    owners: np.ndarray, bits: np.ndarray, tier_of_user: np.ndarray, tier_names: tuple[str, ...], key: str
) -> dict[str, float]:
    """``{key}`` overall and ``{key}_<tier>``: the mean of the bits ``bits`` (n,) whose owners
    (n,) are in each tier, every bit weighing the same (as CEAG's buffers weigh them)."""
    bits = np.asarray(bits, np.float64)
    tiers = tier_of_user[owners]
    rate = lambda members: float(bits[members].mean()) if members.any() else float("nan")  # noqa: E731
    out = {key: rate(np.ones(len(bits), bool)), f"{key}_pairs": int(len(bits))}
    for tier, name in enumerate(tier_names):
        out[f"{key}_{name}"] = rate(tiers == tier)
    return out
