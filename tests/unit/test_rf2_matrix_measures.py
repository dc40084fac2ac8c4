"""RF²'s grid measures on hand-made cells: relative change per tier against the unoptimized cell
of the same mapping and seed, MDAC, speed-up, the seed mean, and the report's answers."""

import math

import pandas as pd
import pytest

from cluster.fairness.matrix import cell_measures, excess_gaps, mean_over_seeds
from cluster.fairness.measures import mdac
from jobs.lib.rf2_report import findings, matrix_markdown

TIERS = ("low", "mid", "high")


def _rows(mapping, configuration, seed, aucs, sim_time_s):
    return [{"model": "dlrm", "mapping": mapping, "configuration": configuration, "seed": seed, "tier": tier,
             "auc": auc, "auc_train": auc + 0.05, "sim_time_s": sim_time_s}
            for tier, auc in zip((*TIERS, "all"), aucs)]


def _grid():
    rows = []
    for seed, shift in ((0, 0.0), (1, 0.02)):
        rows += _rows("random", "none", seed, [0.8, 0.8, 0.8, 0.8], 100.0)
        rows += _rows("random", "exclude-lo", seed, [0.78, 0.8, 0.8, 0.79], 50.0)
        rows += _rows("hetero-vhigh", "none", seed, [0.8, 0.7, 0.6, 0.7], 100.0)
        rows += _rows("hetero-vhigh", "exclude-lo", seed, [0.6 - shift, 0.7, 0.6, 0.63], 40.0)
    return pd.DataFrame(rows)


def test_cell_measures_by_hand():
    measures = cell_measures(_grid(), TIERS).set_index(["mapping", "configuration", "seed"])
    vhigh = measures.loc[("hetero-vhigh", "exclude-lo", 0)]
    assert vhigh["change_low"] == pytest.approx(-0.25) and vhigh["change_mid"] == pytest.approx(0.0)
    assert vhigh["mdac"] == pytest.approx(0.25) and vhigh["change_all"] == pytest.approx(-0.1)
    assert vhigh["speedup"] == pytest.approx(2.5)
    assert measures.loc[("random", "exclude-lo", 0), "mdac"] == pytest.approx(0.025)
    assert measures.loc[("random", "none", 0), "mdac"] == 0.0
    seed1 = measures.loc[("hetero-vhigh", "exclude-lo", 1)]
    assert seed1["change_low"] == pytest.approx(-0.275)


def test_cells_without_a_reference_are_left_out():
    rows = _grid()
    rows = rows[~((rows["mapping"] == "random") & (rows["configuration"] == "none"))]
    measures = cell_measures(rows, TIERS)
    assert set(measures["mapping"]) == {"hetero-vhigh"}


def test_seed_mean_and_report():
    per_seed = cell_measures(_grid(), TIERS)
    per_seed["mdac_train"] = per_seed["mdac"]
    mean = mean_over_seeds(per_seed, TIERS).set_index(["mapping", "configuration"])
    assert mean.loc[("hetero-vhigh", "exclude-lo"), "mdac"] == pytest.approx((0.25 + 0.275) / 2)
    assert (mean["seeds"] == 2).all()
    text = findings(mean.reset_index(), "hetero-vhigh")
    assert "Exclude Lo: MDAC 26.25% under hetero-vhigh against 2.50% under random (10.5x" in text[0]
    table = matrix_markdown(mean.reset_index(), TIERS, "hetero-vhigh")
    # two seeds (0.25, 0.275): t(0.975, 1) = 12.706 x sd 0.0177 / √2 = 0.1588
    assert "| exclude-lo | 2.50 ± 0.00% | 26.25 ± 15.88% |" in table
    assert mean.loc[("hetero-vhigh", "exclude-lo"), "mdac_ci95"] == pytest.approx(12.706205 * 0.0125, rel=1e-5)
    assert "mid−low +26.25 ± 15.88% (beyond noise)" in table


def test_excess_gaps_against_the_reference_cell_by_hand():
    rows = pd.DataFrame(_rows("hetero-vhigh", "none", 0, [0.8, 0.7, 0.6, 0.7], 100.0)
                        + _rows("hetero-vhigh", "prune-1:4:16", 0, [0.6, 0.7, 0.6, 0.65], 50.0))
    gaps = excess_gaps(rows, TIERS, "auc").set_index("configuration")
    # overall drop 0.05; tier drops 0.2, 0.0, 0.0
    assert gaps.loc["prune-1:4:16", "psi_low"] == pytest.approx(0.15)
    assert gaps.loc["prune-1:4:16", "psi_mid"] == pytest.approx(-0.05)
    assert gaps.loc["prune-1:4:16", "max_psi"] == pytest.approx(0.15)
    assert gaps.loc["none", "max_psi"] == 0.0


def test_mdac_is_unknown_when_a_tier_is_unmeasured():
    assert math.isnan(mdac({"low": 0.1, "mid": float("nan"), "high": -0.1}))
    assert mdac({"low": 0.1, "high": -0.1}) == pytest.approx(0.2)
