"""The arithmetic limit a benchmark prints beside its figures, and GMF's multiply-add count."""

import math

import pytest

from cluster.fl.arithmetic_limit import ArithmeticLimit, elementwise_rate, matrix_product_rate
from cluster.fl.families.ncf.gmf_training import gmf_multiply_adds
from cluster.fl.families.ncf.model import NCFSpec
from cluster.fl.families.ncf.ops import NCFOps


def test_the_limit_is_the_multiply_adds_at_the_rate():
    assert ArithmeticLimit(3e6, 2e9).seconds == pytest.approx(1.5e-3)
    assert ArithmeticLimit(3e6, 2e9).fraction(6e-3) == pytest.approx(0.25), "a phase 4x slower than its limit"
    limit = ArithmeticLimit(multiply_adds=3e6, rate=2e9)
    assert limit.seconds == pytest.approx(1.5e-3) and limit.fraction(1.5e-3) == pytest.approx(1.0)


def test_gmf_counts_three_widths_a_sample_and_step():
    # 40K samples of width 16, one step: the logit, the item gradient and the shared sum
    assert gmf_multiply_adds(40_000, 16, 1) == 40_000 * 16 * 3
    assert gmf_multiply_adds(40_000, 16, 2) == 2 * gmf_multiply_adds(40_000, 16, 1)
    # the ops count a round from its positives: each with its 4 negatives
    assert NCFOps(NCFSpec("gmf", 16, (8,), 100), 4).local_multiply_adds(8_000, 1) == gmf_multiply_adds(40_000, 16, 1)
    assert NCFOps(NCFSpec("neumf", 16, (8,), 100), 4).local_multiply_adds(8_000, 1) is None, "only GMF is counted"


def test_the_elementwise_rate_is_measured_on_this_machine():
    rate = elementwise_rate(10_000, repeats=3)
    assert math.isfinite(rate) and 1e6 < rate < 1e13
    assert elementwise_rate(0, repeats=1) > 0, "an empty round still gets a rate"


def test_one_threads_matrix_products_outrun_its_elementwise_passes():
    # a product reuses each operand from cache: any BLAS does several times more multiply-adds a
    # second than a pass that reads three arrays per multiply-add
    assert matrix_product_rate(128, repeats=3) > 3 * elementwise_rate(2**20, repeats=3)


def test_fl_speed_page_gives_the_fraction_of_the_limit():
    from configs import load_config
    from jobs.bench_fl import SpeedMeasurements, speed_page

    cfg = load_config("configs/demo.yaml", ["fl.clients_per_round=100"])
    baseline = {"updates_per_s": 10_000.0, "round_s": 0.01, "phases": {"plan_s": 0.001, "train_s": 0.004,
                                                                        "aggregate_s": 0.002}}
    measured = SpeedMeasurements(baseline, [], floor_s=0.02, driver_peak_mib=400.0,
                                 limit=ArithmeticLimit(multiply_adds=2.5e6, rate=2.5e9))
    text = speed_page("python jobs/bench_fl.py", "MovieLens 100K", cfg, 40, 943, measured).markdown("x")
    assert "## Fraction of the arithmetic limit" in text
    assert "| 2.50 M | 2.50 | 1.00 | 4.0 | 0.25 | 0.10 |" in text, text[-800:]
    without = speed_page("python jobs/bench_fl.py", "MovieLens 100K", cfg, 40, 943,
                         SpeedMeasurements(baseline, [], floor_s=0.02, driver_peak_mib=400.0)).markdown("x")
    assert "arithmetic limit" not in without


def test_bench_fl_check_names_every_missed_speed_goal():
    from jobs.bench_fl import goal_verdicts

    baseline = {"updates_per_s": 10_000.0, "phases": {"train_s": 4e-3}}
    limit = ArithmeticLimit(multiply_adds=2.5e6, rate=2.5e9)  # 1 ms a round
    met = goal_verdicts(baseline, [{"workers": 1, "updates_per_s": 8_000.0}], 0.005, limit)
    assert [ok for _, ok in met] == [True, True, True], met
    missed = goal_verdicts(baseline, [{"workers": 1, "updates_per_s": 7_900.0}], 0.0051,
                           ArithmeticLimit(multiply_adds=2.5e6, rate=2.6e9))
    assert [ok for _, ok in missed] == [False, False, False], missed
    assert "0.79x" in missed[0][0] and "5.1 ms" in missed[1][0]
