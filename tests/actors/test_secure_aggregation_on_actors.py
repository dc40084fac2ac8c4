"""Secure aggregation on real Ray actors: what crosses from a worker actor to the server is masked
field elements and nothing else, a worker lost for good mid-run is a dropout after masking that
the survivors' shares recover, and a secure, distributed-DP run gives the in-process loop's
results with three workers per tier as with one."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import ray

from actors.factory import start_workers, worker_names
from actors.worker_pool import RayWorkerPool
from cluster.fl.experiment import build
from cluster.fl.inprocess import trained_loop
from cluster.fl.round_loop import RoundLoop, RoundSchedule
from cluster.fl.shard import save_shards
from cluster.fl.types import ClientUpdate
from cluster.privacy import secure_layer
from cluster.privacy.secure_upload import MaskedUpload
from cluster.storage import Storage
from configs import load_config
from jobs.fl_sim import build_run_write

pytestmark = pytest.mark.usefixtures("ray_session")

SECURE = ("fl.upload=dense", "fl.secure_aggregation={kind: secagg, neighbours: 8, dropout: {low: 0.2}}")


def tiny(tmp_path: Path, *extra: str):
    return load_config("configs/demo.yaml", [
        "data.synthetic.n_users=240", "data.synthetic.n_items=300", "data.synthetic.target_interactions=5000",
        "fl.clients_per_round=40", "fl.rounds=3", "fl.checkpoint_every=3", "fl.overselect=0", "fl.eval_every=3",
        "model.embedding_dim=8", f"data.cache_dir={tmp_path / 'cache'}", f"storage={tmp_path / 'runs'}", *SECURE,
        *extra,
    ])


def test_only_masked_uploads_leave_the_workers_and_a_lost_worker_is_recovered(tmp_path: Path, monkeypatch):
    exp = build(tiny(tmp_path, "fl.runtime.workers_per_tier=2"))
    run = Storage(tmp_path / "run")
    save_shards(exp.shards(), worker_names(exp.cfg.fl, exp.fleet.tiers.names), run / "shards")
    workers = start_workers(exp.cfg.fl, exp.worker_setup(), exp.fleet.tiers.names, run)
    arrived = []
    real_add = secure_layer.RoundSum.add

    def watched_add(self, upload):
        arrived.append(upload)
        return real_add(self, upload)

    monkeypatch.setattr(secure_layer.RoundSum, "add", watched_add)
    try:
        setup = exp.server_setup()
        loop = RoundLoop(setup.server(), RayWorkerPool(workers, timeout_s=120), setup.worker_of_user,
                         RoundSchedule(3, None))
        first = loop.run_round()
        assert arrived and all(isinstance(u, MaskedUpload) and not isinstance(u, ClientUpdate) for u in arrived)
        assert all(u.masked.dtype == np.uint32 for u in arrived)
        assert first["aggregated"] + first["secagg_dropped"] == 40 and first["secagg_aborted"] == 0

        ray.kill(workers[0], no_restart=True)  # clients-low-0, lost for good: its clients mask, never send
        lost = loop.run_round()
        assert lost["failed_low"] > 0 and lost["secagg_aborted"] == 0, lost
        # A drawn dropout may sit on the lost worker: it is counted in both.
        assert 40 - lost["failed"] - lost["secagg_dropped"] <= lost["aggregated"] <= 40 - lost["failed"]
        assert np.isfinite(lost["train_loss"])
    finally:
        for worker in workers:
            ray.kill(worker, no_restart=True)


def test_a_secure_distributed_dp_run_on_actors_equals_the_in_process_loop(tmp_path: Path):
    private = "fl.privacy={kind: distributed_dp, target_epsilon: 8}"
    cfg = tiny(tmp_path, private, "fl.runtime.workers_per_tier=3")
    _, run_dir, _ = build_run_write(cfg, quiet=True)
    summary = json.loads((run_dir.local_path / "summary.json").read_text())
    history = trained_loop(build(tiny(tmp_path, private)), eval_every=3).history
    assert summary["final"]["hr10"] == history[-1]["hr10"]
    assert summary["final"]["ndcg10_std"] == history[-1]["ndcg10_std"]
    assert summary["privacy"]["epsilon"] == history[-1]["dp_epsilon"]
