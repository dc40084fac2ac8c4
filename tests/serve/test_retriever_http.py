"""The fair retriever over real HTTP: answers, bad bodies as 4xx (never 500), /health, /stats."""

from __future__ import annotations

import json

import httpx
import numpy as np
import pytest
import ray
from ray import serve

from actors.dual_vector import DualVectorActor
from actors.retrieval_shard import RetrievalShard
from cluster.retrieval.fairsync import ExposureTargets
from cluster.retrieval.partitions import partition_items
from serve.retriever import FairRetriever

N_ITEMS, DIM, N_GROUPS, MAX_K = 300, 8, 3, 20


@pytest.fixture(scope="module")
def base_url(serve_port, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("retriever")
    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(N_ITEMS, DIM)).astype(np.float32)
    groups = rng.integers(0, N_GROUPS, N_ITEMS)
    shards = []
    for i, part in enumerate(partition_items(np.arange(N_ITEMS), vectors, groups, 2, rng)):
        path = tmp / f"shard-{i}.npz"
        part.save(path)
        shards.append(ray.remote(RetrievalShard).options(name=f"serve-shard-{i}", max_restarts=1)
                      .remote(f"shard-{i}", str(path), N_GROUPS))
    targets = ExposureTargets(np.array([0.0, 0.0, 3.0 * 100]), horizon=100, k=10)
    dual = ray.remote(DualVectorActor).options(name="serve-dual-vector").remote(
        str(tmp / "dual.pkl"), targets, 4, 0.2, "adam", "projected", shards)
    users = rng.normal(size=(5, DIM)).astype(np.float32)
    serve.run(FairRetriever.bind(shards, dual, np.array([11, 12, 13, 14, 15]), users, np.arange(N_ITEMS) + 1000,
                                 groups, ["drama", "comedy", "documentary"], MAX_K),
              name="fair-retriever", route_prefix="/")
    yield f"http://127.0.0.1:{serve_port}"
    serve.delete("fair-retriever")
    for handle in [dual, *shards]:
        ray.kill(handle, no_restart=True)


def test_retrieve_by_user_and_by_vector(base_url):
    with httpx.Client(base_url=base_url, timeout=30) as client:
        answer = client.post("/retrieve", json={"user_id": 12, "k": 5})
        assert answer.status_code == 200, answer.text
        body = answer.json()
        assert len(body["items"]) == 5 and body["partial"] is False
        assert all(1000 <= item["id"] < 1000 + N_ITEMS for item in body["items"])
        assert {item["group"] for item in body["items"]} <= {"drama", "comedy", "documentary"}
        adjusted = [item["adjusted_score"] for item in body["items"]]
        assert adjusted == sorted(adjusted, reverse=True)
        by_vector = client.post("/retrieve", json={"user_vector": [0.1] * DIM, "k": 3})
        assert by_vector.status_code == 200 and len(by_vector.json()["items"]) == 3


@pytest.mark.parametrize("body,status,needle", [
    ({"user_id": 999, "k": 5}, 404, "unknown user_id"),
    ({"user_vector": [0.1] * (DIM + 1), "k": 5}, 422, "expected 8"),
    ({"user_id": 12, "k": 0}, 422, "greater than 0"),
    ({"user_id": 12, "k": MAX_K + 1}, 422, "exceeds the maximum"),
    ({"user_id": 12, "user_vector": [0.0] * DIM}, 422, "exactly one"),
    ({"k": 5}, 422, "exactly one"),
    ({"user_id": 12, "k": 5, "extra": 1}, 422, "extra"),
])
def test_bad_bodies_are_4xx_with_a_reason(base_url, body, status, needle):
    answer = httpx.post(f"{base_url}/retrieve", json=body, timeout=30)
    assert answer.status_code == status, answer.text
    assert needle.lower() in answer.text.lower()


def test_nan_and_malformed_json_are_422(base_url):
    nan_body = json.dumps({"user_vector": [float("nan")] + [0.0] * (DIM - 1), "k": 3})
    answer = httpx.post(f"{base_url}/retrieve", content=nan_body, headers={"content-type": "application/json"}, timeout=30)
    assert answer.status_code == 422, answer.text
    broken = httpx.post(f"{base_url}/retrieve", content="{not json", headers={"content-type": "application/json"}, timeout=30)
    assert broken.status_code == 422


def test_health_and_stats(base_url):
    with httpx.Client(base_url=base_url, timeout=30) as client:
        assert client.get("/health").json()["status"] == "ok"
        for _ in range(8):
            client.post("/retrieve", json={"user_id": 11, "k": 10})
        stats = client.get("/stats").json()
        assert stats["groups"] == ["drama", "comedy", "documentary"]
        assert stats["requests"] >= 8 and sum(stats["exposure"]) >= 80
        assert stats["mu_version"] >= 2 and 0.0 <= stats["esp"] <= 1.0
