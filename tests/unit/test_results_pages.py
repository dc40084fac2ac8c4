"""The jobs' results pages from small made-up results: what each states about its seeds and
intervals, the sentences computed from the numbers, and the plots written beside the page. The
jobs themselves run end to end in tests/actors/test_job_commands.py."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from jobs.lib.job_page import dataset_title, job_command, seeds_phrase, spread_note

TIERS = ("low", "mid", "high")


def test_command_dataset_and_seeds_as_a_page_says_them():
    assert job_command("jobs/bench_fl.py", ["--set", "model.top_hidden=[32]", "--rounds", "2"]) == \
        "python jobs/bench_fl.py --set 'model.top_hidden=[32]' --rounds 2"
    assert dataset_title("ml-100k") == "MovieLens 100K"
    assert dataset_title("synthetic:1000000x100000") == "synthetic, 1,000,000 users × 100,000 items"
    assert dataset_title("ml-csv:mine") == "ml-csv:mine"
    assert seeds_phrase([0]) == "one seed (0)" and seeds_phrase([0, 1, 2]) == "3 seeds (0, 1, 2)"
    assert spread_note([4]).startswith("One seed (4): no confidence interval")
    assert "95 % Student-t half-width over seeds (2 degrees of freedom)" in spread_note([0, 1, 2])


def _written(page, tmp_path: Path) -> tuple[str, Path]:
    target = tmp_path / "docs" / "page.md"
    page.write(target)
    return target.read_text(), target.parent / "page"


# ------------------------------------------------------------------ CEAG

def _ceag_rows(seeds=(0, 1, 2)) -> pd.DataFrame:
    """Per seed: the reference; prune-1:4:16, whose accuracy equals the reference's in every tier
    (ψ is 0 by construction); and prune + CEAG, whose low tier loses 3e-5 of accuracy that the
    population keeps (ψ_low = 3e-5, which two decimals of a percentage print as +0.00 %)."""
    rows = []
    for seed in seeds:
        shift = 0.01 * seed
        acc = {"low": 0.80, "mid": 0.82, "high": 0.84, "all": 0.82}
        cells = {
            "none": ({"low": 0.70, "mid": 0.75, "high": 0.80, "all": 0.75}, acc, 100.0),
            "prune-1:4:16": ({"low": 0.60 - shift, "mid": 0.70, "high": 0.78, "all": 0.69}, acc, 50.0),
            "prune-1:4:16+ceag0.01": ({"low": 0.64 - shift, "mid": 0.71, "high": 0.78, "all": 0.71},
                                      {**acc, "low": 0.80 - 3e-5}, 50.0),
        }
        for config, (auc, accuracy, sim) in cells.items():
            for tier in (*TIERS, "all"):
                rows.append({"model": "dlrm", "mapping": "hetero-vhigh", "seed": seed, "configuration": config,
                             "tier": tier, "auc": auc[tier], "auc_train": auc[tier] + 0.05, "acc": accuracy[tier],
                             "acc_train": accuracy[tier], "pair_train": 0.9, "sim_time_s": sim})
    return pd.DataFrame(rows)


def _ceag_rounds(seeds=(0, 1, 2)) -> pd.DataFrame:
    return pd.DataFrame([{"model": "dlrm", "mapping": "hetero-vhigh", "seed": seed,
                          "configuration": "prune-1:4:16+ceag0.01", "round": r, "sim_time_s": 10.0 * r,
                          **{f"lambda_{t}": 0.01 * r for t in TIERS}} for seed in seeds for r in (1, 2, 3)])


def test_ceag_table_says_why_psi_is_zero_and_keeps_tiny_values_visible():
    from jobs.ceag_compare import measure
    from jobs.lib.ceag_report import ceag_markdown

    table = measure(_ceag_rows(seeds=(0,)), TIERS, "accuracy")
    flags = table.set_index("configuration")
    assert flags.loc["prune-1:4:16", "psi_train_unchanged"] and not flags.loc["none", "psi_train_unchanged"]
    assert not flags.loc["prune-1:4:16+ceag0.01", "psi_train_unchanged"]
    text = ceag_markdown(table, ["prune-1:4:16"], [0.01], "accuracy")
    prune, ceag = (line for line in text.splitlines() if line.startswith("| prune-1:4:16"))
    assert "| 0 † | 0 † |" in prune and "ψ is exactly 0: every tier's accuracy equals" in text
    # the low tier alone loses 3e-5 while the population keeps its accuracy: ψ_low = 3e-5, i.e. +0.003 %
    assert "| +0.003% | +0.003% |" in ceag, ceag
    assert "+0.00%" not in text


def test_ceag_page_has_intervals_on_every_measure_and_pairs_ceag_with_its_optimization(tmp_path: Path):
    from jobs.ceag_compare import measure
    from jobs.lib.ceag_report import CEAGGrid, ceag_page
    from jobs.lib.rf2_report import RunDescription

    table = measure(_ceag_rows(), TIERS, "accuracy")
    grid = CEAGGrid(["prune-1:4:16"], [0.01], constrained="accuracy", proxy="loss", dual_lr=2.0, buffer_size=2000)
    run = RunDescription("python jobs/x.py", seeds=[0, 1, 2], dataset="MovieLens 100K", setting="Every cell: 60 rounds.")
    page = ceag_page(table, _ceag_rounds(), TIERS, grid=grid, run=run)
    text, assets = _written(page, tmp_path)
    assert text.startswith("# CEAG on accuracy against the tier-aware optimizations: DLRM on MovieLens 100K")
    assert "Mean over 3 seeds (0, 1, 2)" in text and "mean ± 95 % CI over 3 seeds" in text
    ceag = next(line for line in text.splitlines() if line.startswith("| prune-1:4:16 + CEAG |"))
    cells = [c.strip() for c in ceag.split("|")[1:-1]]
    assert all(" ± " in c for c in cells[2:8]), cells  # MDAC, ψ and ΔAUC, train and held-out
    # held-out MDAC per seed: alone 0.1179 + shift/0.7, CEAG 0.0607 + shift/0.7: the paired difference is
    # -5.71 points in every seed, so its interval is 0 wide and excludes 0
    assert "| hetero-vhigh | prune-1:4:16 | 0.01 | -" in text and "(beyond noise)" in text
    assert "CEAG lowers held-out MDAC beyond the seeds' noise in 1 of 1 cells" in text
    assert (assets / "multipliers.png").stat().st_size > 0 and "](page/multipliers.png)" in text


# ------------------------------------------------------------------ RF² matrix

def _matrix(seeds=(0, 1, 2)) -> pd.DataFrame:
    from cluster.fairness.matrix import cell_measures, mean_over_seeds

    rows = []
    for seed in seeds:
        shift = 0.01 * seed
        for mapping, reference in (("random", [0.8, 0.8, 0.8, 0.8]), ("hetero-vhigh", [0.8, 0.7, 0.6, 0.7])):
            drop = 0.2 if mapping == "random" else 0.4
            cells = {"none": reference,
                     "exclude-lo": [reference[0] - drop - shift, reference[1], reference[2], reference[3] - 0.07],
                     "quants-1:4:16": [reference[0] - 0.001 * seed, *reference[1:]]}
            for config, aucs in cells.items():
                for tier, auc in zip((*TIERS, "all"), aucs):
                    rows.append({"model": "din", "mapping": mapping, "configuration": config, "seed": seed,
                                 "tier": tier, "auc": auc, "auc_train": auc + 0.05,
                                 "sim_time_s": 40.0 if config == "exclude-lo" else 100.0})
    keys = ["model", "mapping", "seed", "configuration"]
    rows = pd.DataFrame(rows)
    train = cell_measures(rows, TIERS, "auc_train")[[*keys, "mdac"]].rename(columns={"mdac": "mdac_train"})
    return mean_over_seeds(cell_measures(rows, TIERS).merge(train, on=keys), TIERS)


def test_matrix_page_names_the_model_and_carries_intervals_and_both_figures(tmp_path: Path):
    from jobs.lib.rf2_report import RunDescription, matrix_page

    run = RunDescription("python jobs/rf2_matrix.py --set model.kind=din", seeds=[0, 1, 2], dataset="MovieLens 100K",
                         setting="Every cell: 60 rounds.")
    page = matrix_page(_matrix(), TIERS, "hetero-vhigh", run=run)
    text, assets = _written(page, tmp_path)
    assert text.startswith("# RF²'s matrix: DIN on MovieLens 100K")
    mdac = next(line for line in text.splitlines() if line.startswith("| exclude-lo | ") and "%" in line)
    assert mdac.count(" ± ") == 2, mdac
    assert "3 seeds, 95 % CI ±" in text and "intervals disjoint" in text
    assert "exceeds the seeds' noise (paired 95 % CI excludes 0) for 1 of 2 optimizations: exclude-lo" in text
    assert "Simulated speed-ups under hetero-vhigh, against no optimization: exclude-lo 2.50x" in text
    for name in ("mdac.png", "tier_change_hetero-vhigh.png"):
        assert (assets / name).stat().st_size > 0 and f"](page/{name})" in text


def test_matrix_title_names_a_strategy_and_a_lone_mapping():
    from jobs.lib.rf2_report import RunDescription, matrix_page

    measures = _matrix()
    measures = measures[measures["mapping"] == "hetero-vhigh"]
    run = RunDescription("c", seeds=[0, 1, 2], dataset="MovieLens 100K", setting="")
    page = matrix_page(measures, TIERS, "hetero-vhigh", run=run, strategy="ditto")
    assert page.title == "RF²'s matrix: DIN with Ditto on MovieLens 100K, hetero-vhigh"


def test_matrix_findings_say_one_seed_plainly():
    from jobs.lib.rf2_report import findings

    text = "\n".join(findings(_matrix(seeds=(0,)), "hetero-vhigh"))
    assert "; one seed." in text and "(one seed)" in text and "± " not in text and "noise" not in text


# ------------------------------------------------------------------ benchmarks

def test_fl_speed_page_gives_the_ratio_and_the_goal_verdict():
    from configs import load_config
    from jobs.bench_fl import SpeedMeasurements, speed_page

    cfg = load_config("configs/demo.yaml", ["fl.clients_per_round=100"])
    phases = {"plan_s": 0.001, "train_s": 0.05, "aggregate_s": 0.007}
    baseline = {"updates_per_s": 1000.0, "round_s": 0.1, "phases": phases}
    ray = [{"workers": 1, "updates_per_s": 770.0, "round_s": 0.13, "phases": phases, "eval_round_s": 0.1},
           {"workers": 2, "updates_per_s": 1100.0, "round_s": 0.09, "phases": phases, "eval_round_s": 0.1}]
    measured = SpeedMeasurements(baseline, ray, floor_s=0.021, driver_peak_mib=490.0)
    text = speed_page("python jobs/bench_fl.py", "MovieLens 100K", cfg, 40, 943, measured).markdown("x")
    assert text.startswith("# FL engine speed: GMF on MovieLens 100K, 100 clients per round, 1 local epoch")
    assert "| Ray, 1 worker(s) per tier | 770 | 0.130 | 1.23 | 0.77x | 1.0 | 50.0 | 7.0 | 0.10 |" in text
    assert "1 worker(s) per tier at 0.77x the in-process path (goal: at least 0.80x): not met" in text
    assert "2 worker(s) per tier at 1.10x the in-process path (goal: at least 0.80x): met" in text
    assert "Ray's own cost 21.0 ms a round (goal: at most 5 ms): not met" in text
    assert "21.0 ms, 0.21x the whole in-process round" in text and "One run, one seed (0)" in text


def test_generator_page_compares_the_scales():
    from jobs.bench_synthetic import generator_page

    def row(scale, n, seconds, rss):
        return {"scale": scale, "users": int(1e6 * scale), "items": 100_000, "interactions": n, "generate_s": seconds,
                "interactions_per_s": n / seconds, "parquet_write_s": 1.0, "parquet_mb": 20.0,
                "peak_rss_gib_before": 0.08, "peak_rss_gib_generate": rss, "peak_rss_gib_total": rss + 0.06}

    text = generator_page("python jobs/bench_synthetic.py", 0, [row(0.1, 2_500_000, 2.5, 0.3),
                                                                 row(1.0, 25_000_000, 25.0, 1.2)]).markdown("x")
    assert text.startswith("# Synthetic generator at scale: up to 1,000,000 users × 100,000 items, 25,000,000")
    assert "| 1 | 1,000,000 | 100,000 | 25,000,000 | 25.0 | 1.00 |" in text
    assert "interactions ×10.0, generation time ×10.0, throughput ×1.00" in text and "peak memory ×4.0" in text


def test_heterogeneity_page_gives_each_preset_an_interval():
    from jobs.tier_heterogeneity import heterogeneity_page

    results = {"random": ([0.009, 0.010, 0.011], [340, 286, 317]),
               "hetero-mid": ([0.040, 0.042, 0.044], [358, 291, 294]),
               "hetero-vhigh": ([0.084, 0.085, 0.086], [325, 302, 316])}
    text = heterogeneity_page("python jobs/tier_heterogeneity.py", "MovieLens 100K", "click", 100, [0, 1, 2],
                              results).markdown("x")
    # sd 0.001 over 3 seeds: t(0.975, 2) 4.3027 x 0.001 / √3 = 0.0025
    assert "| random | 0.0100 ± 0.0025 | 0.0010 | 0.0090 – 0.0110 | 340, 286, 317 |" in text
    assert "falls monotonically from hetero-vhigh to hetero-mid" in text
    assert "hetero-vhigh gives 8.5x the divergence of random" in text


def test_memory_page_from_measured_peaks():
    from jobs.bench_memory import GIB, memory_page
    from jobs.lib.process_peaks import ProcessPeak
    from configs import load_config

    roles = {"driver": [ProcessPeak(1, "python jobs/fl_sim.py", int(3.06 * GIB))],
             "ClientWorker": [ProcessPeak(2, "ray::ClientWorker", int(4.2 * GIB)), ProcessPeak(3, "ray::ClientWorker", GIB)]}
    cfg = load_config("configs/synthetic_1m.yaml", [])
    text = memory_page("python jobs/bench_memory.py --check -- --config configs/synthetic_1m.yaml", roles, 4 * GIB,
                       0, 489.0, cfg).markdown("x")
    assert text.startswith("# Peak memory per process against 4 GiB: synthetic, 1,000,000 users × 100,000 items")
    assert "| driver | 1 | 3.06 | yes |" in text and "| ClientWorker | 2 | 4.20 | **no** |" in text
    assert "peaked at 4.20 GiB (ClientWorker): the goal of at most 4 GiB per process is not met, 0.20 GiB over it." in text
    assert "10 rounds × 1,000 clients per round" in text and "One run, one seed (0)" in text


@pytest.mark.parametrize("values, expected", [([0.5], "0.5000"), ([0.4, 0.6], "0.5000 ± 1.2706")])
def test_mean_and_interval(values, expected):
    from jobs.lib.job_page import mean_ci, pm

    assert pm(*mean_ci(values)) == expected
    assert np.isnan(mean_ci([])[0])
