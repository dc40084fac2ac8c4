"""Evaluation splits: leave-one-out with sampled negatives (ranking) and a per-user temporal
hold-out (click / AUC). Both are seeded through an explicit Generator."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from cluster.arrays import sorted_unique
from cluster.data.types import Interactions


@dataclass(frozen=True)
class LeaveOneOut:
    """Each evaluated user's latest interaction is its test item, ranked against negatives.

    test_users, test_items: (m,) int32; negatives: (m, n_negatives) int32, distinct per row and
    never an item the user interacted with. Users with a single interaction keep it for
    training and are not evaluated.
    """

    train: Interactions
    test_users: np.ndarray
    test_items: np.ndarray
    negatives: np.ndarray

    def candidates(self) -> np.ndarray:
        """(m, 1 + n_negatives): the test item in column 0, then its negatives."""
        return np.concatenate([self.test_items[:, None], self.negatives], axis=1)


def leave_one_out(inter: Interactions, n_negatives: int, rng: np.random.Generator) -> LeaveOneOut:
    indptr, order = inter.user_order()
    counts = np.diff(indptr)
    evaluated = np.flatnonzero(counts >= 2).astype(np.int32)
    latest_rows = order[indptr[evaluated + 1] - 1]
    train_mask = np.ones(len(inter), dtype=bool)
    train_mask[latest_rows] = False
    negatives = sample_negatives(inter, evaluated, n_negatives, rng)
    return LeaveOneOut(
        train=inter.take(train_mask),
        test_users=evaluated,
        test_items=inter.items[latest_rows].astype(np.int32),
        negatives=negatives,
    )


NEGATIVE_BLOCK = 16_384
"""Users per block of negative sampling. The draws for one block are (block, ~1.5 n) int64 arrays
and their sorts: at 1M users, one pass over everyone would hold several GB at once. Data sets up
to one block draw exactly as one pass would."""


def sample_negatives(inter: Interactions, users: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """(len(users), n) distinct items per row that the row's user never interacted with."""
    seen_keys = sorted_unique(inter.users.astype(np.int64) * inter.n_items + inter.items)
    seen_per_user = np.bincount(inter.users, minlength=inter.n_users)
    short = np.flatnonzero(inter.n_items - seen_per_user[users] < n)
    if len(short):
        user = int(users[short[0]])
        raise ValueError(
            f"user {user} interacted with {seen_per_user[user]} of {inter.n_items} items: "
            f"fewer than {n} negatives are left to sample"
        )
    result = np.empty((len(users), n), dtype=np.int32)
    for lo in range(0, len(users), NEGATIVE_BLOCK):
        block = slice(lo, lo + NEGATIVE_BLOCK)
        result[block] = _sample_block(users[block], seen_keys, inter.n_items, n, rng)
    return result


def _sample_block(
    users: np.ndarray, seen_keys: np.ndarray, n_items: int, n: int, rng: np.random.Generator
) -> np.ndarray:
    result = np.empty((len(users), n), dtype=np.int32)
    pending = np.arange(len(users))
    width = n + max(8, n // 2)
    while len(pending):
        candidates = rng.integers(0, n_items, size=(len(pending), width))
        keys = users[pending, None].astype(np.int64) * n_items + candidates
        position = np.minimum(np.searchsorted(seen_keys, keys), len(seen_keys) - 1)
        valid = seen_keys[position] != keys
        valid &= ~_repeated_in_row(candidates)
        done = valid.sum(axis=1) >= n
        # Stable argsort on ~valid brings each row's valid candidates first, in draw order.
        first_valid = np.argsort(~valid[done], axis=1, kind="stable")[:, :n]
        result[pending[done]] = np.take_along_axis(candidates[done], first_valid, axis=1)
        pending = pending[~done]
        width = min(2 * width, 4 * n_items)
    return result


def _repeated_in_row(candidates: np.ndarray) -> np.ndarray:
    """True where a value already appeared earlier in the same row."""
    order = np.argsort(candidates, axis=1, kind="stable")
    ordered = np.take_along_axis(candidates, order, axis=1)
    repeated_sorted = np.zeros_like(ordered, dtype=bool)
    repeated_sorted[:, 1:] = ordered[:, 1:] == ordered[:, :-1]
    repeated = np.zeros_like(repeated_sorted)
    np.put_along_axis(repeated, order, repeated_sorted, axis=1)
    return repeated


@dataclass(frozen=True)
class TemporalHoldout:
    """Row indices into the split interactions: each user's latest ``fraction`` go to test
    (at least one when the user has two or more rows), the rest to train."""

    train_rows: np.ndarray
    test_rows: np.ndarray


def temporal_holdout(inter: Interactions, fraction: float) -> TemporalHoldout:
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"hold-out fraction must be in (0, 1), got {fraction}")
    indptr, order = inter.user_order()
    counts = np.diff(indptr)
    wanted = np.clip(np.ceil(counts * fraction), 1, np.maximum(counts - 1, 1)).astype(np.int64)
    n_test = np.where(counts >= 2, wanted, 0)
    position = np.arange(len(inter)) - np.repeat(indptr[:-1], counts)
    is_test_sorted = position >= np.repeat(counts - n_test, counts)
    return TemporalHoldout(train_rows=np.sort(order[~is_test_sorted]), test_rows=np.sort(order[is_test_sorted]))
