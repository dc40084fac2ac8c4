"""The comparison's measures by hand: time to come within 5 % of a run's best NDCG, the table's
ratios against FedAvg, and the job's refusals."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from jobs.cali3f_compare import main
from jobs.lib.cali3f_report import comparison_markdown, comparison_table, time_to_within


def _rounds(model, strategy, ndcg, step_s):
    return pd.DataFrame({"model": model, "strategy": strategy, "seed": 0, "round": np.arange(1, len(ndcg) + 1),
                         "sim_time_s": step_s * np.arange(1, len(ndcg) + 1), "ndcg10": ndcg})


def test_time_to_within_five_percent_of_the_best():
    rounds = _rounds("gmf", "fedavg", [0.1, np.nan, 0.37, 0.30, 0.40, 0.39], 10.0)
    got = time_to_within(rounds)  # unevaluated rounds (NaN) are skipped; 0.37 < 0.95 x 0.40
    assert got["best"] == 0.40
    assert got["rounds_to_5pct"] == 5
    assert got["sim_s_to_5pct"] == 50.0


def test_time_to_within_counts_the_first_round_at_the_threshold():
    rounds = _rounds("gmf", "fedavg", [0.1, 0.385, 0.40], 10.0)  # 0.385 >= 0.95 x 0.40 = 0.38
    assert time_to_within(rounds)["rounds_to_5pct"] == 2
    assert np.isnan(time_to_within(_rounds("gmf", "fedavg", [np.nan], 1.0))["best"])


def test_comparison_table_times_against_fedavg():
    rounds = pd.concat([_rounds("neumf", "fedavg", [0.1, 0.2, 0.3, 0.4], 100.0),
                        _rounds("neumf", "cali3f", [0.3, 0.4, 0.4, 0.4], 200.0)])
    results = pd.DataFrame({"model": "neumf", "strategy": ["fedavg", "cali3f"], "seed": 0, "hr10": [0.7, 0.71],
                            "ndcg10": [0.4, 0.4], "ndcg10_std": [0.3, 0.28]})
    table = comparison_table(results, rounds).set_index("strategy")
    assert table.loc["fedavg", "sim_s_to_5pct"] == 400.0
    assert table.loc["cali3f", "sim_s_to_5pct"] == 400.0  # round 2 at 200 s per round
    assert table.loc["cali3f", "time_vs_fedavg"] == 1.0
    markdown = comparison_markdown(table.reset_index())
    assert "| neumf | cali3f | 0.7100 | 0.4000 | 0.2800 |" in markdown and "0.71 / 0.40" in markdown


def test_job_refuses_a_base_config_with_a_strategy_and_a_missing_baseline(capsys):
    assert main(["--config", "configs/demo.yaml", "--set", "fl.strategy=cali3f"]) == 2
    assert "leave fl.strategy at fedavg" in capsys.readouterr().err
    assert main(["--config", "configs/demo.yaml", "--strategies", "ditto", "cali3f"]) == 2
    assert "must include fedavg" in capsys.readouterr().err


@pytest.mark.parametrize("bad", [["--models", "dlrm"], ["--strategies", "fedprox"]])
def test_job_refuses_unknown_models_and_strategies(bad):
    with pytest.raises(SystemExit) as exc:
        main(["--config", "configs/demo.yaml", *bad])
    assert exc.value.code == 2


def test_two_seeds_give_a_confidence_interval():
    rounds = pd.concat([_rounds("gmf", "fedavg", [0.1, 0.2], 10.0).assign(seed=s) for s in (0, 1)])
    results = pd.DataFrame({"model": "gmf", "strategy": "fedavg", "seed": [0, 1], "hr10": [0.70, 0.72],
                            "ndcg10": [0.4, 0.4], "ndcg10_std": [0.3, 0.3]})
    markdown = comparison_markdown(comparison_table(results, rounds))
    # t(0.975, 1) = 12.706 x sd 0.01414 / √2 = 0.1271
    assert "mean ± 95 % CI over 2 seeds" in markdown
    assert "| gmf | fedavg | 0.7100 ± 0.1271 | 0.4000 ± 0.0000 | 0.3000 ± 0.0000 |" in markdown


def test_paired_differences_against_fedavg_by_hand():
    from jobs.lib.cali3f_report import paired_differences, paired_markdown

    rows = []
    for seed, (fedavg, cali3f) in enumerate([(0.60, 0.50), (0.62, 0.50), (0.64, 0.53)]):
        rows += [{"model": "gmf", "strategy": "fedavg", "seed": seed, "hr10": fedavg, "ndcg10_std": 0.30},
                 {"model": "gmf", "strategy": "cali3f", "seed": seed, "hr10": cali3f, "ndcg10_std": 0.30 + 0.01 * seed}]
    (row,) = paired_differences(pd.DataFrame(rows)).to_dict("records")
    # differences -0.10, -0.12, -0.11: mean -0.11, sd 0.01, half-width t(0.975, 2) 4.3027 x 0.01 / sqrt(3)
    assert row["hr10"] == pytest.approx(-0.11) and row["hr10_ci95"] == pytest.approx(4.3027 * 0.01 / 3 ** 0.5, rel=1e-4)
    assert row["hr10_beyond_noise"] and not row["ndcg10_std_beyond_noise"]  # +0.01 ± 0.0248
    assert "beyond noise" in paired_markdown(pd.DataFrame([row]))
    one_seed = paired_differences(pd.DataFrame(rows[:2]))
    assert paired_markdown(one_seed) == "", "one seed has no interval to read"


def test_the_convergence_figure_names_only_the_strategies_run():
    from jobs.lib.cali3f_report import convergence_title

    rounds = pd.concat([_rounds("gmf", "cali3f", [0.1, 0.2], 10.0), _rounds("gmf", "fedavg", [0.1, 0.2], 10.0)])
    assert convergence_title(rounds) == "Convergence: FedAvg, Cali3F"
    assert convergence_title(pd.concat([rounds, _rounds("mlp", "ditto", [0.1], 1.0)]), "MovieLens 100K") == \
        "Convergence on MovieLens 100K: FedAvg, Ditto, Cali3F"
