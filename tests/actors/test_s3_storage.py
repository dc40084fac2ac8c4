"""An S3-compatible object store (moto's server on loopback) as the storage of a real run: the
FL job writes its run folder and checkpoints there and, after a crash, resumes from them through
the CLI to the same rounds as an unbroken run, and the retriever's shards load their partitions
from it (again after a restart)."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
import ray
from ray.exceptions import GetTimeoutError, RayActorError

from actors.factory import start_aggregator, start_workers, worker_names
from cluster import checkpoint
from cluster.fl.shard import save_shards
from cluster.storage import Storage
from configs import load_config
from cluster.fl.experiment import build
from cluster.fl.inprocess import trained_loop
from jobs.fl_sim import main
from jobs.lib.outputs import write_resolved_config

pytestmark = pytest.mark.usefixtures("ray_session")

TINY = ["data.synthetic.n_users=240", "data.synthetic.n_items=300", "data.synthetic.target_interactions=5000",
        "fl.clients_per_round=40", "fl.rounds=5", "fl.checkpoint_every=2", "fl.overselect=0", "fl.eval_every=2"]


def test_fl_run_writes_to_s3_and_resumes_from_it(s3_server, tmp_path: Path):
    bucket = s3_server("fl-runs")
    cfg = load_config("configs/demo.yaml", [*TINY, f"data.cache_dir={tmp_path / 'cache'}", f"storage={bucket}/runs"])
    # The unbroken run in process (an actor run equals it: tests/actors/test_strategies_on_actors.py).
    loop = trained_loop(build(cfg), eval_every=cfg.fl.eval_every)
    reference = loop.history

    # A run that dies after round 3 (its last checkpoint: round 2), with every file in the bucket.
    exp = build(cfg)
    run_dir = Storage(bucket) / "runs" / "crashed"
    write_resolved_config(run_dir, cfg)
    save_shards(exp.shards(), worker_names(cfg.fl, exp.fleet.tiers.names), run_dir / "shards")
    workers = start_workers(cfg.fl, exp.worker_setup(), exp.fleet.tiers.names, run_dir)
    aggregator = start_aggregator(exp.server_setup(), run_dir / "checkpoint", run_name="crashed")
    try:
        for _ in range(3):
            ray.get(aggregator.run_round.remote())
    finally:
        for handle in (aggregator, *workers):
            ray.kill(handle, no_restart=True)
    assert checkpoint.latest(run_dir / "checkpoint").name == "round-000002"
    assert sorted((run_dir / "shards").list()) == ["clients-high-0.npz", "clients-low-0.npz", "clients-mid-0.npz"]

    assert main(["--resume", run_dir.uri]) == 0  # the CLI path, reading config and checkpoint from the bucket
    summary = run_dir.read_json("summary.json")
    assert summary["resumed_from_round"] == 2 and summary["rounds"] == 5
    assert summary["final"]["hr10"] == reference[-1]["hr10"]
    assert {"rounds.parquet", "tiers.parquet", "clients.parquet", "item_embeddings.parquet"} <= set(run_dir.list())
    rounds = run_dir.read_parquet("rounds.parquet").to_pandas()
    assert rounds["round"].tolist() == [1, 2, 3, 4, 5]
    # Every round, before the crash and after the resume, as in the unbroken run.
    for key in ("hr10", "ndcg10", "train_loss", "aggregated", "sim_time_s"):
        expected = [row.get(key, np.nan) for row in reference]
        np.testing.assert_array_equal(rounds[key].to_numpy(dtype=float), np.asarray(expected, dtype=float), err_msg=key)
    assert not [name for name in run_dir.list() if name.endswith(".pkl")]


def test_retriever_shards_load_their_partitions_from_s3(s3_server):
    from actors.retrieval_factory import save_partitions, start_retrieval
    from cluster.retrieval.catalog import Catalog
    from cluster.retrieval.fairsync import DualVector, ExposureTargets
    from configs.schema import RetrievalConfig

    store = Storage(s3_server("retriever")) / "serve"
    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(200, 8)).astype(np.float32)
    catalog = Catalog(np.arange(200), vectors, rng.integers(0, 3, 200), ["a", "b", "c"], np.arange(2),
                      rng.normal(size=(2, 8)).astype(np.float32))
    cfg = RetrievalConfig(n_shards=2, k=5, search_in="shard_actors")
    save_partitions(cfg, catalog, store / "shards", rng)
    targets = ExposureTargets(np.array([0.0, 0.0, 100.0]), horizon=100, k=5)
    # μ steps every 1,000 requests: it stays 0 here, so answers are the exact top-K.
    fleet = start_retrieval(cfg, catalog, DualVector(targets, 1000, 0.2, "adam"), store / "shards", store,
                            name_prefix="s3-")
    try:
        queries = rng.normal(size=(3, 8)).astype(np.float32)
        answer = fleet.coordinator.retrieve(queries, 5)
        expected = np.argsort(-(queries @ vectors.T), axis=1)[:, :5]
        assert not answer.partial and np.array_equal(np.sort(answer.hits.items, 1), np.sort(expected, 1))
        assert store.exists("dual-vector.npz")  # the dual state is persisted in the bucket too

        old_pid = ray.get(fleet.shards[0].pid.remote())
        ray.kill(fleet.shards[0], no_restart=False)
        deadline, new_pid = time.time() + 60, old_pid
        while time.time() < deadline and new_pid == old_pid:
            try:
                new_pid = ray.get(fleet.shards[0].pid.remote(), timeout=5)
            except (RayActorError, GetTimeoutError):
                time.sleep(0.5)
        assert new_pid != old_pid, "the shard did not restart"
        again = fleet.coordinator.retrieve(queries, 5)
        assert not again.partial and np.array_equal(np.sort(again.hits.items, 1), np.sort(expected, 1))
    finally:
        fleet.kill()
