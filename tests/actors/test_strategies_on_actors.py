"""Cali3F, Ditto, FedProx and SCAFFOLD (with adaptive server optimizers) through ``jobs/fl_sim.py`` on real Ray actors: the same results as the
in-process loop (so the comparison grid's cells stand for actor runs), with over-selection and a
compressing optimization, written files, and resume from a checkpoint."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from cluster.fl.inprocess import trained_loop
from configs import load_config
from cluster.fl.experiment import build
from jobs.fl_sim import build_run_write

pytestmark = pytest.mark.usefixtures("ray_session")


def tiny(tmp_path: Path, *extra: str):
    return load_config("configs/demo.yaml", [
        "data.synthetic.n_users=240", "data.synthetic.n_items=300", "data.synthetic.target_interactions=5000",
        "fl.clients_per_round=40", "fl.rounds=4", "fl.checkpoint_every=2", "fl.overselect=0", "fl.eval_every=2",
        "model.embedding_dim=8", f"data.cache_dir={tmp_path / 'cache'}", f"storage={tmp_path / 'runs'}", *extra,
    ])


def test_ditto_on_actors_equals_the_in_process_loop(tmp_path: Path):
    cfg = tiny(tmp_path, "fl.strategy.kind=ditto", "model.kind=neumf", "model.mlp_layers=[16,8]")
    _, run_dir, _ = build_run_write(cfg, quiet=True)
    run_dir = run_dir.local_path  # a local storage: read its files directly
    summary = json.loads((run_dir / "summary.json").read_text())
    exp = build(cfg)
    loop = trained_loop(exp, eval_every=cfg.fl.eval_every)
    history = loop.history
    assert summary["strategy"] == cfg.fl.strategy.kind
    assert summary["final"]["ndcg10"] == history[-1]["ndcg10"]
    assert summary["final"]["ndcg10_std"] == history[-1]["ndcg10_std"]
    assert (run_dir / "clients.parquet").exists()
    assert not (run_dir / "user_queries.parquet").exists(), "NeuMF has no GMF user vectors to serve"
    # The train measure a CEAG run on NCF reads as its reference (served models: the personal ones).
    assert 0.0 < summary["final_train"]["pair_train_low"] < 1.0
    assert summary["final_train"] == loop.evaluate("train")


@pytest.mark.parametrize("strategy", [
    ("fl.strategy.kind=fedprox", "fl.strategy.mu=0.002", "fl.server_optimizer=adam", "fl.server_lr=0.05"),
    ("fl.strategy.kind=scaffold", "fl.server_optimizer=yogi", "fl.server_lr=0.05"),
], ids=["fedprox-adam", "scaffold-yogi"])
def test_device_side_strategies_with_adaptive_servers_on_actors_equal_the_in_process_loop(tmp_path: Path, strategy):
    """FedProx's proximal term and SCAFFOLD's control variates run in the workers (SCAFFOLD's
    kept there across rounds and checkpoints), FedAdam's and FedYogi's moments in the aggregator:
    the same model as the in-process loop."""
    cfg = tiny(tmp_path, *strategy, "fl.local_epochs=2")
    _, run_dir, _ = build_run_write(cfg, quiet=True)
    summary = json.loads((run_dir.local_path / "summary.json").read_text())
    loop = trained_loop(build(cfg), eval_every=cfg.fl.eval_every)
    history = loop.history
    assert summary["final"]["hr10"] == history[-1]["hr10"]
    assert summary["final"]["ndcg10_std"] == history[-1]["ndcg10_std"]


CALI3F = ("fl.strategy.kind=cali3f", "fl.optimization=quants-1:2:8", "fl.overselect=0.25")


def test_cali3f_on_actors_resumed_equals_the_unbroken_in_process_loop(tmp_path: Path):
    """Two rounds on actors with two workers per tier, then resumed to four from the checkpoint
    on one worker per tier (a cluster of another size: each worker loads its clients' vectors
    from whichever worker saved them), with over-selection and a compressing optimization: the
    unbroken in-process run, bit for bit (one test for all, as each actor run costs process starts)."""
    cfg = tiny(tmp_path, *CALI3F, "fl.rounds=2", "fl.runtime.workers_per_tier=2")
    _, run_dir, _ = build_run_write(cfg, quiet=True)
    run_dir = run_dir.local_path  # a local storage: read its files directly
    longer = tiny(tmp_path, *CALI3F, "fl.rounds=4")
    saved = (run_dir / "config.yaml").read_text()
    assert "workers_per_tier: 2" in saved
    (run_dir / "config.yaml").write_text(saved.replace("rounds: 2", "rounds: 4").replace("workers_per_tier: 2",
                                                                                          "workers_per_tier: 1"))
    _, _, resumed = build_run_write(longer, resume_dir=run_dir, quiet=True)
    loop = trained_loop(build(longer), eval_every=longer.fl.eval_every)
    server, straight = loop.server, loop.history
    assert resumed["resumed_from"] == 2
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["strategy"] == "cali3f" and summary["rounds"] == 4 and straight[-1]["dropped"] == 10
    assert summary["final"]["ndcg10"] == straight[-1]["ndcg10"] == resumed["history"][-1]["ndcg10"]
    assert summary["final"]["ndcg10_std"] == straight[-1]["ndcg10_std"]
    assert np.isfinite(resumed["history"][-1]["ndcg10"])
    assert (run_dir / "clients.parquet").exists() and (run_dir / "user_queries.parquet").exists()
    for name in server.params:
        assert np.array_equal(resumed["params"][name], server.params[name]), name


def test_compare_job_writes_its_table_and_plot_and_resumes(tmp_path: Path):
    from jobs.cali3f_compare import main

    sets = ["data.synthetic.n_users=240", "data.synthetic.n_items=300", "data.synthetic.target_interactions=5000",
            "fl.clients_per_round=40", "fl.rounds=3", "fl.overselect=0", "fl.eval_every=1", "model.embedding_dim=8",
            f"data.cache_dir={tmp_path / 'cache'}"]
    argv = ["--config", "configs/demo.yaml", *[a for s in sets for a in ("--set", s)], "--models", "gmf",
            "--out", str(tmp_path / "compare")]
    assert main(argv) == 0
    out = tmp_path / "compare"
    for name in ("results.parquet", "rounds.parquet", "compare.md", "convergence.png"):
        assert (out / name).stat().st_size > 0, name
    table = (out / "compare.md").read_text()
    assert all(f"| gmf | {s} |" in table for s in ("fedavg", "ditto", "cali3f"))
    cells = sorted((out / "cells").glob("*.rounds.parquet"))
    assert len(cells) == 3
    stamps = [c.stat().st_mtime_ns for c in cells]
    assert main(argv) == 0  # every cell finished: read back, not run again
    assert [c.stat().st_mtime_ns for c in cells] == stamps
