"""``jobs/bench_click.py``: its speed goal (each click model's training at least a fraction of its
matrix-product limit, measured in the same run) and the scaled-down check of it on MovieLens 100K
that CI runs: the kernel that trained through autograd over padded batches ran at ~0.02 (DLRM) and
~0.05 (DIN) of that limit, under the goal."""

from pathlib import Path

from cluster.fl.arithmetic_limit import ArithmeticLimit
from jobs.bench_click import EXIT_GOAL_MISSED, MATRIX_FRACTION_GOAL, ClickSpeed, goal_verdicts, main


def _speed(kind: str, train_round_s: float) -> ClickSpeed:
    return ClickSpeed(kind, 1000, 100.0, train_round_s, 0.6, ArithmeticLimit(1e9, 2e9),
                      ArithmeticLimit(1e9, 50e9))  # 20 ms a round at the matrix-product rate


def test_each_model_is_held_to_its_matrix_product_fraction():
    at_goal = 0.02 / MATRIX_FRACTION_GOAL
    verdicts = goal_verdicts([_speed("dlrm", at_goal), _speed("din", at_goal * 1.01)])
    assert [met for _, met in verdicts] == [True, False], verdicts
    assert verdicts[1][0].startswith("DIN training at 0.08 of its matrix-product limit"), verdicts


def test_scaled_down_click_check_on_movielens(tmp_path: Path, ml100k_path: Path, capsys):
    page = tmp_path / "click-speed.md"
    sets = ["--set", f"data.path={ml100k_path}", "--set", f"data.cache_dir={tmp_path / 'cache'}"]
    code = main([*sets, "--rounds", "3", "--eval-every", "3", "--check", "--report", str(page)])
    printed = capsys.readouterr().out
    assert code != EXIT_GOAL_MISSED, [line for line in printed.splitlines() if line.startswith("goal missed")]
    assert code == 0
    text = page.read_text()
    assert "| DLRM | 40,097 |" in text and "| DIN | 63,250 |" in text, text
    assert text.count(": met in this run.") == 2
