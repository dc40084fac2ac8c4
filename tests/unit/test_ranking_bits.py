"""The pairwise ranking quality CEAG can bound, by hand."""

from __future__ import annotations

import numpy as np
import pytest

from cluster.fairness.ranking import pair_counts, pair_rate_by_tier, pairwise_bits


def test_bits_of_one_client_by_hand():
    scores = np.array([0.9, 0.2, 0.5, 0.5, 0.1], np.float32)
    labels = np.array([1, 0, 1, 0, 0], np.float32)
    # clicks 0.9 and 0.5 against non-clicks 0.2, 0.5, 0.1: a tie counts 0
    assert pairwise_bits(scores, labels).tolist() == [1, 1, 1, 1, 0, 1]


def test_counts_without_forming_pairs_match_the_bits():
    rng = np.random.default_rng(0)
    owners = rng.integers(0, 30, 600)
    labels = (rng.random(600) < 0.3).astype(np.float32)
    scores = np.round(rng.random(600), 1)  # many ties
    clients, correct, pairs = pair_counts(owners, labels, scores)
    for client, c, p in zip(clients, correct, pairs):
        mine = owners == client
        bits = pairwise_bits(scores[mine], labels[mine])
        assert (c, p) == (bits.sum(), len(bits))
    one_class = [c for c in np.unique(owners) if len(np.unique(labels[owners == c])) < 2]
    assert not set(one_class) & set(clients.tolist())


def test_rate_per_tier_pools_the_tiers_pairs():
    owners = np.array([0, 0, 0, 1, 1, 2, 2])
    labels = np.array([1, 0, 0, 1, 0, 1, 1], np.float32)  # client 2 has no non-click: no pairs
    scores = np.array([0.8, 0.9, 0.1, 0.7, 0.2, 0.5, 0.6], np.float32)
    tier_of_user = np.array([0, 1, 1])
    rates = pair_rate_by_tier(owners, labels, scores, tier_of_user, ("low", "high"), "pair_train")
    assert rates["pair_train_low"] == pytest.approx(0.5)  # client 0: 1 of 2
    assert rates["pair_train_high"] == pytest.approx(1.0)  # client 1: 1 of 1
    assert rates["pair_train"] == pytest.approx(2 / 3)
