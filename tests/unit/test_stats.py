"""Confidence intervals over seeds and the paired tier gap, against hand-computed values."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from cluster.fairness.stats import ci95_half_width, tier_gap


def test_t_interval_by_hand():
    # mean 2, sd 1, n 3: t(0.975, 2) = 4.302653 → 4.302653 / √3
    assert ci95_half_width([1.0, 2.0, 3.0]) == pytest.approx(4.302653 / math.sqrt(3), rel=1e-6)
    # n 2: t(0.975, 1) = 12.706205, sd |a − b| / √2, / √2 → 12.706205 · |a − b| / 2
    assert ci95_half_width([0.1, 0.3]) == pytest.approx(12.706205 * 0.1, rel=1e-6)
    assert math.isnan(ci95_half_width([0.5]))
    assert ci95_half_width([1.0, float("nan"), 2.0, 3.0]) == pytest.approx(4.302653 / math.sqrt(3), rel=1e-6)


def test_tier_gap_is_paired_over_seeds_and_says_when_it_exceeds_the_noise():
    consistent = pd.DataFrame({"change_low": [-0.20, -0.22, -0.24], "change_mid": [0.0, 0.0, 0.0],
                               "change_high": [0.0, 0.0, 0.0]})
    gap = tier_gap(consistent, ("low", "mid", "high"))
    assert (gap["gap_high"], gap["gap_low"]) == ("mid", "low")  # a tie goes to the first tier
    assert gap["gap"] == pytest.approx(0.22)
    assert gap["gap_ci95"] == pytest.approx(4.302653 * 0.02 / math.sqrt(3), rel=1e-6)
    assert gap["beyond_noise"]
    noisy = pd.DataFrame({"change_low": [-0.2, 0.25, -0.1], "change_mid": [0.0, 0.0, 0.0],
                          "change_high": [0.1, -0.2, 0.05]})
    assert not tier_gap(noisy, ("low", "mid", "high"))["beyond_noise"]
