"""Shard actors build their partition's index once and store it; every later start (a restart by
Ray after a crash, or a new run) loads it. ``jobs/retrieval_scale.py``'s steps at a small scale."""

from __future__ import annotations

import os
import signal
import time

import numpy as np
import pytest
import ray

from jobs import retrieval_scale
from serve.backend import backend_folder

pytestmark = pytest.mark.usefixtures("ray_session")


@pytest.fixture()
def small_run(tmp_path):
    args = retrieval_scale.parse_args([
        "--storage", str(tmp_path), "--items", "6000", "--dim", "16", "--shards", "2", "--index", "ivf",
        "--nlist", "32", "--nprobe", "8", "--users", "300", "--queries", "64", "--shard-cpus", "0",
    ])
    return args, retrieval_scale.scale_config(args)


def test_shards_build_and_store_their_indexes_once_and_load_them_at_every_later_start(small_run):
    args, cfg = small_run
    step = retrieval_scale.write_partitions(cfg)
    users = step.pop("users")
    assert not step["found"]
    shards, first = retrieval_scale.start_timed(cfg, step["n_groups"], "first start")
    assert [row["index"] for row in first["shards"]] == ["built", "built"]
    assert all(row["peak_rss"] > 0 and row["index_bytes"]["total"] > 0 for row in first["shards"])
    folder = backend_folder(cfg) / "shards"
    stored = sorted(name for name in folder.list() if name.endswith(".index.npz"))
    assert len(stored) == 2
    measured = retrieval_scale.recall(cfg, shards, folder, users, args.queries, args.k)
    assert measured["recall"] >= 0.9
    queries = users[:5].astype(np.float32)
    before = [ray.get(s.search.remote(queries, args.k, np.zeros(8), 10))[0].items for s in shards]
    retrieval_scale.stop(shards)

    assert retrieval_scale.write_partitions(cfg)["found"]
    shards, again = retrieval_scale.start_timed(cfg, step["n_groups"], "restart")
    try:
        assert [row["index"] for row in again["shards"]] == ["loaded", "loaded"]
        assert sorted(name for name in folder.list() if name.endswith(".index.npz")) == stored
        after = [ray.get(s.search.remote(queries, args.k, np.zeros(8), 10))[0].items for s in shards]
        for got, expected in zip(after, before):
            np.testing.assert_array_equal(got, expected)
    finally:
        retrieval_scale.stop(shards)


def test_a_shard_ray_restarts_after_a_crash_loads_its_stored_index(small_run):
    args, cfg = small_run
    step = retrieval_scale.write_partitions(cfg)
    shards, first = retrieval_scale.start_timed(cfg, step["n_groups"], "first start")
    try:
        assert first["shards"][0]["index"] == "built"
        old_pid = ray.get(shards[0].pid.remote())
        os.kill(old_pid, signal.SIGKILL)
        deadline = time.time() + 120
        while True:
            try:
                ready = ray.get(shards[0].ready.remote(), timeout=10)
                if ray.get(shards[0].pid.remote()) != old_pid:
                    break
            except (ray.exceptions.RayActorError, ray.exceptions.GetTimeoutError):
                pass
            assert time.time() < deadline, "the shard did not come back"
            time.sleep(0.2)
        assert ready["index"] == "loaded"
    finally:
        retrieval_scale.stop(shards)


def test_the_job_writes_its_page(tmp_path, monkeypatch):
    """Every step but serving, for real at a small scale (serving starts and shuts down Serve on a
    port of its own, which would take the shared session's Serve down; it is stubbed)."""
    from tests.unit.test_retrieval_pages import assert_results_page

    serving = {"up_s": 3.0, "http": [{"concurrency": 16, "qps": 400.0, "p50_ms": 37.4, "p99_ms": 79.3, "errors": 0}],
               "floor": [{"concurrency": 16, "qps": 3369.0, "p50_ms": 4.4, "p99_ms": 12.5, "errors": 0}]}
    monkeypatch.setattr(retrieval_scale, "http", lambda cfg, args: serving)
    page = tmp_path / "scale.md"
    argv = ["--storage", str(tmp_path / "store"), "--items", "5000", "--dim", "16", "--shards", "2", "--index",
            "ivf_rq", "--nlist", "16", "--nprobe", "8", "--users", "200", "--queries", "32", "--shard-cpus", "0",
            "--report", str(page)]
    assert retrieval_scale.main(argv) == 0
    text = assert_results_page(page, "jobs/retrieval_scale.py", ())
    assert "| first start of the shards |" in text and "index built" in text and "index loaded" in text
    assert "| 16 | 400 | 37.4 | 79.3 | 0 | 3,369 | 0.12 |" in text
    recall = float(text.split("queries: **", 1)[1].split("**", 1)[0])
    assert recall >= 0.9
