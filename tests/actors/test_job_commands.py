"""The documented benchmark and comparison commands, each run end to end on a tiny world: they must
keep running as the code under them changes (their full-scale runs are jobs, not tests)."""

from __future__ import annotations

from pathlib import Path

import pytest

pytestmark = pytest.mark.usefixtures("ray_session")

TINY = ["data.synthetic.n_users=240", "data.synthetic.n_items=300", "data.synthetic.target_interactions=6000",
        "fl.overselect=0", "fl.clients_per_round=40"]
CLICK = ["model.kind=dlrm", "model.top_hidden=[32]", "model.history_len=20", "fl.rounds=2", "fl.client_lr=1.0",
         "fl.server_optimizer=adagrad", "fl.server_lr=0.1"]


def _sets(tmp_path: Path, *items: str) -> list[str]:
    every = [*TINY, *items, f"data.cache_dir={tmp_path / 'cache'}", f"storage={tmp_path / 'runs'}"]
    return [arg for item in every for arg in ("--set", item)]


def assert_page(page: Path, job: str, plots: tuple[str, ...] = ()) -> str:
    """A results page as the docs site gets it: the command that reruns the job, the machine and
    versions, at least one table, and every plot it links present beside it."""
    from jobs.lib.results_page import machine_line

    text = page.read_text()
    assert text.startswith("# "), text[:200]
    assert f"| command | `python jobs/{job}.py " in text and f"--report {page}" in text, text[:1500]
    assert f"| machine | {machine_line()} |" in text and "| versions | " in text and "| seeds | " in text
    assert text.count("|---|") >= 2, "the header table and at least one table of results"
    for name in plots:
        assert (page.parent / page.stem / name).stat().st_size > 0, name
        assert f"]({page.stem}/{name})" in text, name
    return text


def test_ceag_compare_runs_its_grid_and_writes_its_table(tmp_path: Path, capsys):
    from jobs.ceag_compare import main

    out, page = tmp_path / "ceag", tmp_path / "docs" / "ceag.md"
    code = main(["--config", "configs/demo.yaml", *_sets(tmp_path, *CLICK), "--optimizations", "prune-1:4:16",
                 "--mappings", "hetero-vhigh", "--epsilons", "0.01", "--buffer-size", "50", "--out", str(out),
                 "--report", str(page)])
    printed = capsys.readouterr().out
    assert code == 0, printed[-2000:]
    assert "prune-1:4:16" in printed and "CEAG" in printed
    assert (out / "cells.parquet").stat().st_size > 0
    text = assert_page(page, "ceag_compare", ("multipliers.png",))
    assert text.startswith("# CEAG on accuracy against the tier-aware optimizations: DLRM on synthetic")
    assert "| prune-1:4:16 + CEAG | 0.01 |" in text and "one seed" in text.lower()
    # ψ reads as 0 only with its reason: the accuracy of every tier did not move against the reference.
    import pandas as pd

    table = pd.read_parquet(out / "ceag.parquet")
    flat = table[table["configuration"] != "none"]["psi_train_unchanged"].all()
    assert ("0 †" in text and "ψ is exactly 0" in text) == bool(flat)
    assert "| +0.00% |" not in text


def test_ceag_compare_runs_on_ncf_by_hr10_and_the_train_pair_rate(tmp_path: Path, capsys):
    from jobs.ceag_compare import main

    out, page = tmp_path / "ceag", tmp_path / "docs" / "ceag-gmf.md"
    common = ["--config", "configs/demo.yaml", *_sets(tmp_path, "fl.rounds=2"), "--optimizations", "prune-1:4:16",
              "--mappings", "hetero-vhigh", "--epsilons", "0", "--buffer-size", "50", "--out", str(out)]
    assert main(common) == 2, "NCF's CEAG bounds only the pairwise measure: accuracy is refused up front"
    assert "--measure pairwise" in capsys.readouterr().err
    assert main([*common, "--measure", "pairwise", "--report", str(page)]) == 0
    text = assert_page(page, "ceag_compare", ("multipliers.png",))
    assert text.startswith("# CEAG on pairwise ranking against the tier-aware optimizations: GMF on synthetic")
    assert "held-out HR@10" in text and "Δpair rate train | ΔHR@10 held-out" in text and "AUC" not in text
    assert "| prune-1:4:16 + CEAG | 0 |" in text


def test_bench_fl_times_the_ray_and_the_in_process_paths(tmp_path: Path, capsys):
    from jobs.bench_fl import main

    page = tmp_path / "docs" / "fl-speed.md"
    assert main(["--config", "configs/demo.yaml", *_sets(tmp_path), "--rounds", "2", "--workers", "1",
                 "--report", str(page)]) == 0
    printed = capsys.readouterr().out
    assert "in-process (no Ray)" in printed and "Ray, 1 worker(s)/tier" in printed and "Ray's own cost per round" in printed, printed[-2000:]
    text = assert_page(page, "bench_fl")
    assert text.startswith("# FL engine speed: GMF on synthetic")
    assert "| Ray, 1 worker(s) per tier |" in text and "Ray's own cost per round" in text and "One run" in text


def test_bench_click_trains_both_click_models(tmp_path: Path, capsys):
    from jobs.bench_click import main

    assert main(["--config", "configs/demo.yaml", *_sets(tmp_path), "--models", "dlrm", "din", "--rounds", "2",
                 "--clients", "20", "--history", "10", "--eval-every", "1"]) == 0
    printed = capsys.readouterr().out
    assert "dlrm" in printed.lower() and "din" in printed.lower() and "AUC" in printed, printed[-2000:]


def test_bench_synthetic_generates_at_two_scales(tmp_path: Path, capsys):
    from jobs.bench_synthetic import main

    page = tmp_path / "docs" / "synthetic.md"
    assert main(["--config", "configs/demo.yaml", "--set", f"data.cache_dir={tmp_path / 'cache'}",
                 "--scales", "0.5", "1.0", "--report", str(page)]) == 0
    printed = capsys.readouterr().out
    assert printed.count("scale ") >= 2 and "ratio 1.0/0.5" in printed, printed[-2000:]
    text = assert_page(page, "bench_synthetic")
    assert text.startswith("# Synthetic generator at scale: up to 2,000 users × 1,000 items")
    assert "| 0.5 | 1,000 |" in text and "From scale 0.5 to 1" in text


def test_cali3f_compare_writes_its_page_over_two_seeds(tmp_path: Path, capsys):
    from jobs.cali3f_compare import main

    sets = [*TINY, "data.synthetic.target_interactions=5000", "fl.rounds=2", "fl.eval_every=1", "model.embedding_dim=8",
            f"data.cache_dir={tmp_path / 'cache'}"]
    page = tmp_path / "docs" / "cali3f.md"
    assert main(["--config", "configs/demo.yaml", *[a for s in sets for a in ("--set", s)], "--models", "gmf",
                 "--strategies", "fedavg", "cali3f", "--seeds", "0", "1", "--out", str(tmp_path / "compare"),
                 "--report", str(page)]) == 0
    capsys.readouterr()
    text = assert_page(page, "cali3f_compare", ("convergence.png",))
    # Ditto was not run: neither the title nor the figure's caption names it.
    assert text.startswith("# Cali3F against FedAvg: GMF on synthetic") and "Ditto" not in text
    assert "Convergence on synthetic, 240 users × 300 items: FedAvg, Cali3F" in text
    assert "mean ± 95 % CI over 2 seeds" in text and "| gmf | cali3f | " in text
    assert "## Each method against FedAvg" in text and "paired over 2 seeds" in text


def test_tier_heterogeneity_writes_its_page(tmp_path: Path, capsys):
    from jobs.tier_heterogeneity import main

    page = tmp_path / "docs" / "tiers.md"
    assert main(["--config", "configs/demo.yaml", *_sets(tmp_path), "--seeds", "3", "--report", str(page)]) == 0
    capsys.readouterr()
    text = assert_page(page, "tier_heterogeneity")
    assert text.startswith("# Tier-mapping heterogeneity on synthetic, 240 users × 300 items")
    assert "Mean over 3 seeds (0, 1, 2)" in text
    rows = [line for line in text.splitlines() if line.startswith(("| random |", "| hetero-"))]
    assert len(rows) == 6 and all(" ± " in row for row in rows), rows
