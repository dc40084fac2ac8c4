"""Click models (DLRM / DIN) through the FL engine on real Ray actors, under RF²'s tier-aware
optimizations: results files, per-tier AUC, and determinism across worker counts with
compression and channel slicing on."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from configs import load_config
from cluster.fl.experiment import build
from cluster.fl.inprocess import round_loop, trained_loop
from jobs.fl_sim import build_run_write, run

pytestmark = pytest.mark.usefixtures("ray_session")


def tiny_click(tmp_path: Path, *extra: str):
    return load_config("configs/demo.yaml", [
        "data.synthetic.n_users=240", "data.synthetic.n_items=300", "data.synthetic.target_interactions=6000",
        "model.kind=dlrm", "model.top_hidden=[32]", "model.history_len=20",
        "fl.clients_per_round=40", "fl.rounds=3", "fl.overselect=0", "fl.eval_every=3", "fl.client_lr=1.0",
        "fl.server_optimizer=adagrad", "fl.server_lr=0.1", f"data.cache_dir={tmp_path / 'cache'}",
        f"storage={tmp_path / 'runs'}", *extra,
    ])


def _metrics(history):
    keys = [k for k in history[-1] if k.startswith(("auc", "train_loss", "aggregated", "sim_", "upload"))]
    return [{k: row.get(k) for k in keys} for row in history]


@pytest.mark.parametrize("extra", [("model.kind=dlrm", "fl.strategy=ditto", "fl.optimization=prune-1:4:16")],
                         ids=["ditto-prune"])
def test_same_results_with_one_or_two_workers_per_tier(tmp_path: Path, extra: tuple):
    """Two workers per tier on actors against one core per tier in process (which an actor run
    with one worker per tier equals: tests/actors/test_rf2_matrix.py). Ditto, because its
    personal models live on the actors that hold their clients; the merges of the other
    optimizations over several workers (channel's masked average among them) are the same code
    in process, where tests/unit/test_click_rounds.py compares one and three workers per tier."""
    two = run(build(tiny_click(tmp_path, "fl.runtime.workers_per_tier=2", *extra)), tmp_path / "two", False, None, quiet=True)
    one = build(tiny_click(tmp_path, "fl.runtime.workers_per_tier=1", *extra))
    loop = round_loop(one, one.cfg.fl.eval_every)
    for _ in range(one.cfg.fl.rounds):
        loop.run_round()
    assert _metrics(loop.history) == _metrics(two["history"])
    for name in loop.server.params:
        assert np.array_equal(loop.server.params[name], two["params"][name]), name
    assert loop.evaluate("train") == two["train_eval"]


def test_click_run_writes_auc_per_tier_and_is_a_ceag_reference(tmp_path: Path):
    """A plain run's files, then the same run as the reference of a CEAG run on the pairwise
    measure with the pairwise-logistic proxy (every worker's proxy uploads merged on actors)."""
    plain, plain_dir, _ = build_run_write(tiny_click(tmp_path, "fl.rounds=2", "fl.eval_every=2"), quiet=True)
    plain_dir = plain_dir.local_path  # a local storage: read its files directly
    summary = json.loads((plain_dir / "summary.json").read_text())
    assert summary["optimization"] == "none" and summary["model"] == "dlrm"
    for key in ("auc", "auc_low", "auc_mid", "auc_high"):
        assert 0.0 < summary["final"][key] < 1.0, key
    assert 0.0 < summary["final_train"]["auc_train"] < 1.0
    tiers = pq.read_table(plain_dir / "tiers.parquet").to_pandas()
    assert set(tiers["tier"]) == {"low", "mid", "high"} and tiers["auc"].notna().sum() == 3
    assert not (plain_dir / "clients.parquet").exists(), "per-client HR/NDCG is NCF's"

    ceag = ("fl.rounds=2", "fl.optimization=channel-1:4:16",
            f"fl.fairness={{kind: ceag, measure: pairwise, proxy: pairwise_logistic, reference_run: {plain_dir}, "
            f"buffer_size: 50}}")
    cfg = tiny_click(tmp_path, *ceag, "fl.runtime.workers_per_tier=2")
    _, run_dir, outcome = build_run_write(cfg, quiet=True)
    run_dir = run_dir.local_path  # a local storage: read its files directly
    rounds = pq.read_table(run_dir / "rounds.parquet").to_pandas()
    for tier in ("low", "mid", "high"):
        assert (rounds[f"lambda_{tier}"] >= 0).all() and rounds[f"psi_{tier}"].notna().all()
    assert "pair_train_low" in json.loads((run_dir / "summary.json").read_text())["final_train"]
    # The in-process loop with one worker per tier gives the same model (the proxy's sums are
    # taken in client-id order, whichever worker sent them).
    loop = trained_loop(build(tiny_click(tmp_path, *ceag)), eval_every=cfg.fl.eval_every)
    server = loop.server
    for name in server.params:
        assert np.array_equal(outcome["params"][name], server.params[name]), name
