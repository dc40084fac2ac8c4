"""The README's benchmark and comparison commands, each run end to end on a tiny world: they must
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


def test_ceag_compare_runs_its_grid_and_writes_its_table(tmp_path: Path, capsys):
    from jobs.ceag_compare import main

    out = tmp_path / "ceag"
    code = main(["--config", "configs/demo.yaml", *_sets(tmp_path, *CLICK), "--optimizations", "prune-1:4:16",
                 "--mappings", "hetero-vhigh", "--epsilons", "0.01", "--buffer-size", "50", "--out", str(out)])
    printed = capsys.readouterr().out
    assert code == 0, printed[-2000:]
    assert "prune-1:4:16" in printed and "CEAG" in printed
    assert (out / "cells.parquet").stat().st_size > 0


def test_bench_fl_times_the_ray_and_the_in_process_paths(tmp_path: Path, capsys):
    from jobs.bench_fl import main

    assert main(["--config", "configs/demo.yaml", *_sets(tmp_path), "--rounds", "2", "--workers", "1"]) == 0
    printed = capsys.readouterr().out
    assert "in-process (no Ray)" in printed and "Ray, 1 worker(s)/tier" in printed and "Ray's own cost per round" in printed, printed[-2000:]


def test_bench_click_trains_both_click_models(tmp_path: Path, capsys):
    from jobs.bench_click import main

    assert main(["--config", "configs/demo.yaml", *_sets(tmp_path), "--models", "dlrm", "din", "--rounds", "2",
                 "--clients", "20", "--history", "10", "--eval-every", "1"]) == 0
    printed = capsys.readouterr().out
    assert "dlrm" in printed.lower() and "din" in printed.lower() and "AUC" in printed, printed[-2000:]


def test_bench_synthetic_generates_at_two_scales(tmp_path: Path, capsys):
    from jobs.bench_synthetic import main

    assert main(["--config", "configs/demo.yaml", "--set", f"data.cache_dir={tmp_path / 'cache'}",
                 "--scales", "0.5", "1.0"]) == 0
    printed = capsys.readouterr().out
    assert printed.count("scale ") >= 2 and "ratio 1.0/0.5" in printed, printed[-2000:]
