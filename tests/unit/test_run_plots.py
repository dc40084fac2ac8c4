"""An FL run's plots from synthetic round records: each family's headline metric, rounds without
an evaluation, a single evaluation, a resumed run, the tables read back, and a plot that fails
without costing the others."""

from __future__ import annotations

import io
import math

import numpy as np
import pytest

from cluster.storage import Storage
from jobs.lib import run_plots
from jobs.lib.fl_results import final_markdown, final_table, rounds_table, tiers_table
from jobs.lib.run_plots import (
    PLOT_FILES,
    curves_from_history,
    history_from_tables,
    plot_caption,
    recorded_metric,
    write_run_plots,
)

TIERS = ("low", "mid", "high")
FAMILIES = {"ncf": ("hr10", "ndcg10"), "click": ("auc",)}


def history(metrics: tuple[str, ...], rounds: int = 12, eval_every: int = 1, nan_rows: bool = False) -> list[dict]:
    """Round records as the aggregator writes them: a metric only on evaluated rounds (the last
    round always), absent elsewhere or NaN (``nan_rows``, as rounds.parquet reads back)."""
    rng = np.random.default_rng(0)
    rows, clock = [], 0.0
    for r in range(1, rounds + 1):
        clock += 30.0 + 10 * rng.random()
        row = {"round": r, "sim_time_s": clock, "client_updates": 40, "selected": 48, "aggregated": 39, "dropped": 6,
               "failed": 2 if r == 3 else 0}
        for k, tier in enumerate(TIERS):
            row.update({f"selected_{tier}": 16, f"dropped_{tier}": 4 - 2 * k if k < 2 else 0, f"aggregated_{tier}": 13,
                        f"failed_{tier}": 2 if (r == 3 and tier == "low") else 0})
        if r % eval_every == 0 or r == rounds:
            for m in metrics:
                row[m] = 0.5 + 0.02 * r
                row.update({f"{m}_{tier}": 0.45 + 0.02 * r + 0.03 * k for k, tier in enumerate(TIERS)})
        elif nan_rows:
            row.update({m: math.nan for m in metrics})
        rows.append(row)
    return rows


def assert_pngs(folder: Storage, written: dict[str, str]) -> None:
    from matplotlib.image import imread

    assert written == PLOT_FILES
    for rel in written.values():
        data = folder.read_bytes(rel)
        assert data[:8] == b"\x89PNG\r\n\x1a\n", rel
        assert len(data) > 15_000, (rel, len(data))  # a drawn figure, not an empty canvas
        pixels = imread(io.BytesIO(data), format="png")
        height, width = pixels.shape[:2]
        assert width >= 600 and height >= 400, (rel, pixels.shape)
        assert len(np.unique(pixels.reshape(-1, pixels.shape[-1]), axis=0)) > 20, rel


@pytest.mark.parametrize("family", sorted(FAMILIES))
@pytest.mark.parametrize("sparse", [False, True], ids=["every-round", "nan-rounds"])
def test_the_three_plots_are_written_for_each_family(tmp_path, family, sparse):
    metrics = FAMILIES[family]
    rows = history(metrics, eval_every=4 if sparse else 1, nan_rows=sparse)
    folder = Storage(tmp_path / "run")
    written = write_run_plots(rows, TIERS, folder, metric=metrics[0], label="demo", strict=True)
    assert_pngs(folder, written)
    curves = curves_from_history(rows, TIERS, metrics[0])
    assert curves.evaluated.tolist() == [(r % 4 == 0 or r == 12) if sparse else True for r in range(1, 13)]


@pytest.mark.parametrize("case", ["one-evaluation", "one-round", "resumed", "no-evaluation"])
def test_edge_runs_still_get_their_plots(tmp_path, case):
    rows = {
        "one-evaluation": history(("hr10", "ndcg10"), rounds=5, eval_every=100),
        "one-round": history(("auc",), rounds=1),
        "resumed": history(("hr10", "ndcg10"), rounds=10, eval_every=2),
        "no-evaluation": [{k: v for k, v in row.items() if not k.startswith("hr10")}
                          for row in history(("hr10",), rounds=3)],
    }[case]
    folder = Storage(tmp_path / case)
    written = write_run_plots(rows, TIERS, folder, resumed_from=6 if case == "resumed" else 0, strict=True)
    assert_pngs(folder, written)


def test_the_metric_is_the_one_the_run_recorded():
    assert recorded_metric(history(("auc",))) == "auc"
    assert recorded_metric(history(("hr10", "ndcg10"), nan_rows=True, eval_every=3)) == "hr10"
    assert recorded_metric([{"round": 1, "auc": math.nan}]) is None
    assert curves_from_history(history(("auc",)), TIERS).metric_label == "AUC"
    assert "HR@10" in plot_caption("quality_by_round", "hr10") and "AUC" in plot_caption("quality_by_sim_time", "auc")


def test_tier_gap_is_max_minus_min_over_the_tiers_measured():
    rows = [
        {"round": 1, "sim_time_s": 1.0, "auc": 0.7, "auc_low": 0.6, "auc_mid": 0.7, "auc_high": 0.75},
        {"round": 2, "sim_time_s": 2.0},
        {"round": 3, "sim_time_s": 3.0, "auc": 0.7, "auc_low": math.nan, "auc_mid": 0.7, "auc_high": 0.72},
        {"round": 4, "sim_time_s": 4.0, "auc": 0.7, "auc_low": math.nan, "auc_mid": math.nan, "auc_high": 0.72},
    ]
    gap = curves_from_history(rows, TIERS).tier_gap()
    assert gap[0] == pytest.approx(0.15) and gap[2] == pytest.approx(0.02)
    assert math.isnan(gap[1]) and math.isnan(gap[3])  # one tier measured: no gap


def test_a_replayed_round_counts_once_and_rounds_come_in_order():
    rows = history(("auc",), rounds=4)
    replay = {**rows[2], "auc": 0.99}
    curves = curves_from_history([rows[1], rows[0], rows[2], replay, rows[3]], TIERS)
    assert curves.rounds.tolist() == [1, 2, 3, 4]
    assert curves.quality["all"][2] == 0.99
    assert curves.failed["low"].tolist() == [0, 0, 2, 0]


def test_the_run_folder_tables_give_back_the_same_curves():
    rows = history(("hr10", "ndcg10"), eval_every=3, nan_rows=False)
    back, names = history_from_tables(rounds_table(rows, "abc", 0), tiers_table(rows, TIERS, "abc", 0))
    assert names == TIERS
    want, got = curves_from_history(rows, TIERS), curves_from_history(back, names)
    assert got.metric == want.metric == "hr10"
    np.testing.assert_array_equal(got.rounds, want.rounds)
    np.testing.assert_array_equal(got.sim_time_s, want.sim_time_s)
    for key in ("all", *TIERS):
        np.testing.assert_array_equal(got.quality[key], want.quality[key])
    for tier in TIERS:
        np.testing.assert_array_equal(got.dropped[tier], want.dropped[tier])
        np.testing.assert_array_equal(got.failed[tier], want.failed[tier])


def test_a_failing_plot_is_reported_and_left_out_unless_strict(tmp_path, monkeypatch, capsys):
    def broken(curves, target):
        raise RuntimeError("no ink")

    monkeypatch.setitem(run_plots.PLOTTERS, "clients_lost_by_round", broken)
    folder = Storage(tmp_path / "run")
    written = write_run_plots(history(("auc",)), TIERS, folder)
    assert set(written) == {"quality_by_round", "quality_by_sim_time"}
    assert not folder.exists(PLOT_FILES["clients_lost_by_round"])
    assert "clients_lost_by_round.png not written (RuntimeError: no ink)" in capsys.readouterr().err
    with pytest.raises(RuntimeError, match="no ink"):
        write_run_plots(history(("auc",)), TIERS, folder, strict=True)


def test_the_final_table_as_markdown_matches_the_console_one():
    rows = history(("hr10", "ndcg10"), rounds=6, eval_every=4)
    markdown = final_markdown(rows, TIERS, ("hr10", "ndcg10"))
    assert "| tier | HR@10 | NDCG@10 | selected | dropped | failed |" in markdown
    assert "| all | 0.6200 | 0.6200 | 288 | 36 | 2 |" in markdown
    assert "| low | 0.5700 | 0.5700 | 96 | 24 | 2 |" in markdown
    assert "at round 6" in markdown
    assert final_table(rows, TIERS, ("hr10", "ndcg10")).splitlines()[1].split() == [
        "all", "0.6200", "0.6200", "288", "36", "2"]


def test_a_run_that_ends_near_chance_says_why_and_one_that_learned_does_not():
    from jobs.lib.fl_results import chance_note

    at_chance = [{"round": 3, "hr10": 0.098}]
    note = chance_note(at_chance, n_negatives=99)
    assert note is not None and "0.10" in note and "fl.rounds" in note
    assert chance_note([{"round": 60, "hr10": 0.41}], n_negatives=99) is None
    assert chance_note([{"round": 5, "auc": 0.51}], n_negatives=99) is not None
    assert chance_note([{"round": 5, "auc": 0.72}], n_negatives=99) is None
    assert chance_note([{"round": 1}], n_negatives=99) is None  # nothing evaluated: nothing to say
