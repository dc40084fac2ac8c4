"""Retrieval shard and dual-vector actors: exact sharded answers, a killed shard answered around
(partial) and back after its restart, the dual vector's state surviving a restart."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
import ray

from actors.dual_vector import DualVectorActor
from actors.retrieval_coordinator import retrieve
from actors.retrieval_shard import RetrievalShard
from cluster.retrieval.fairsync import ExposureTargets
from cluster.retrieval.partitions import partition_items

pytestmark = pytest.mark.usefixtures("ray_session")
N_ITEMS, DIM, N_GROUPS, K = 400, 8, 4, 10


@pytest.fixture()
def fleet(tmp_path: Path):
    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(N_ITEMS, DIM)).astype(np.float32)
    groups = rng.integers(0, N_GROUPS, N_ITEMS)
    vectors[groups == 3] -= 0.8 * vectors[groups == 3].mean(axis=0)  # keep group 3 unremarkable
    parts = partition_items(np.arange(N_ITEMS), vectors, groups, 3, rng)
    shard_cls = ray.remote(RetrievalShard)
    shards = []
    for i, part in enumerate(parts):
        path = tmp_path / f"shard-{i}.npz"
        part.save(path)
        shards.append(shard_cls.options(name=f"shard-{i}", max_restarts=2, max_task_retries=0)
                      .remote(f"shard-{i}", str(path), N_GROUPS))
    targets = ExposureTargets(np.array([0.0, 0.0, 0.0, 4.0 * 200]), horizon=200, k=K)  # group 3: 4 of 10 slots
    dual_cls = ray.remote(DualVectorActor).options(name="dual-vector", max_restarts=2)
    dual = dual_cls.remote(str(tmp_path / "dual.pkl"), targets, 8, 0.2, "adam", "projected", shards)
    ray.get([s.ready.remote() for s in shards] + [dual.ready.remote()])
    yield shards, dual, vectors, groups, rng
    for handle in [dual, *shards]:
        ray.kill(handle, no_restart=True)


def test_sharded_answer_is_the_exact_top_k_and_feeds_the_dual(fleet):
    shards, dual, vectors, groups, rng = fleet
    queries = rng.normal(size=(4, DIM)).astype(np.float32)
    answer = retrieve(shards, dual, queries, K, groups)
    expected = np.argsort(-(queries @ vectors.T), axis=1)[:, :K]
    assert not answer.partial and answer.mu_version == 0
    assert np.array_equal(np.sort(answer.hits.items, axis=1), np.sort(expected, axis=1))
    for _ in range(20):
        retrieve(shards, dual, rng.normal(size=(4, DIM)).astype(np.float32), K, groups)
    stats = ray.get(dual.stats.remote())
    assert stats["requests"] == 84 and sum(stats["exposure"]) == 84 * K
    assert stats["mu_version"] == 84 // 8 and stats["mu"][3] < 0 == stats["mu"][0]


def test_killed_shard_gives_partial_answers_then_comes_back(fleet):
    shards, dual, _, groups, rng = fleet
    queries = rng.normal(size=(2, DIM)).astype(np.float32)
    ray.kill(shards[1], no_restart=False)
    answer = retrieve(shards, dual, queries, K, groups, timeout_s=5.0)
    assert answer.partial and (answer.hits.items >= 0).all()
    deadline = time.time() + 60
    while time.time() < deadline:
        try:
            ray.get(shards[1].ready.remote(), timeout=5)
            break
        except Exception:
            time.sleep(0.5)
    assert not retrieve(shards, dual, queries, K, groups).partial


def test_dual_vector_state_survives_a_restart(fleet):
    shards, dual, _, groups, rng = fleet
    for _ in range(16):
        retrieve(shards, dual, rng.normal(size=(1, DIM)).astype(np.float32), K, groups)
    before = ray.get(dual.stats.remote())
    ray.kill(dual, no_restart=False)
    deadline = time.time() + 60
    while time.time() < deadline:
        try:
            after = ray.get(dual.stats.remote(), timeout=5)
            break
        except Exception:
            time.sleep(0.5)
    assert after["mu_version"] == before["mu_version"] == 2
    assert after["requests"] == 16 and after["mu"] == before["mu"]
