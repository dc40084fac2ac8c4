"""The fair retriever over real HTTP: answers, bad bodies as 4xx (never 500), /health, /stats."""

from __future__ import annotations

import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import httpx
import pytest
import ray
from ray import serve

from configs import SimConfig
from serve.models import RetrieveResponse
from serve.retriever import FairRetriever

N_ITEMS, DIM, N_GROUPS, MAX_K = 300, 8, 3, 20


@dataclass(frozen=True)
class Retriever:
    url: str
    prefix: str  # of its actors' names
    search_in: str


@pytest.fixture(scope="module", params=["replica", "shard_actors"])
def retriever(request, serve_port, tmp_path_factory):
    """The retriever searching in its Serve replica (the default), then over shard actors."""
    search_in, prefix = request.param, f"http-{request.param}-"
    cfg = SimConfig.model_validate({
        "name": "http-test", "storage": str(tmp_path_factory.mktemp("retriever")),
        "retrieval": {"source": "synthetic", "n_shards": 2, "search_in": search_in, "max_k": MAX_K, "k": 10,
                      "policy": {"kind": "fairsync", "batch_size": 4, "lr": 0.2}, "exposure_share": 0.5, "horizon": 100,
                      "synthetic": {"n_items": N_ITEMS, "n_users": 5, "dim": DIM, "n_groups": N_GROUPS,
                                    "disliked_group": 2}},
    })
    serve.run(FairRetriever.bind(cfg, prefix), name="fair-retriever", route_prefix="/")
    yield Retriever(f"http://127.0.0.1:{serve_port}", prefix, search_in)
    serve.delete("fair-retriever")


@pytest.fixture()
def base_url(retriever):
    return retriever.url


def test_retrieve_by_user_and_by_vector(base_url):
    with httpx.Client(base_url=base_url, timeout=30) as client:
        answer = client.post("/retrieve", json={"user_id": 2, "k": 5})
        assert answer.status_code == 200, answer.text
        body = answer.json()
        assert answer.headers["content-type"] == "application/json"
        RetrieveResponse.model_validate(body)  # written by hand for speed: it must still match the documented schema
        assert len(body["items"]) == 5 and body["partial"] is False
        assert all(0 <= item["id"] < N_ITEMS for item in body["items"])
        assert {item["group"] for item in body["items"]} <= {"group-0", "group-1", "group-2"}
        adjusted = [item["adjusted_score"] for item in body["items"]]
        assert adjusted == sorted(adjusted, reverse=True)
        by_vector = client.post("/retrieve", json={"user_vector": [0.1] * DIM, "k": 3})
        assert by_vector.status_code == 200 and len(by_vector.json()["items"]) == 3
        at_most = client.post("/retrieve", json={"user_id": 2, "k": MAX_K})  # the bound itself is allowed
        assert at_most.status_code == 200, at_most.text
        assert len({item["id"] for item in at_most.json()["items"]}) == MAX_K


@pytest.mark.parametrize("body,status,needle", [
    ({"user_id": 999, "k": 5}, 404, "unknown user_id"),
    ({"user_vector": [0.1] * (DIM + 1), "k": 5}, 422, "expected 8"),
    ({"user_id": 2, "k": 0}, 422, "greater than 0"),
    ({"user_id": 2, "k": MAX_K + 1}, 422, "exceeds the maximum"),
    ({"user_id": 2, "user_vector": [0.0] * DIM}, 422, "exactly one"),
    ({"k": 5}, 422, "exactly one"),
    ({"user_id": 2, "k": 5, "extra": 1}, 422, "extra"),
    ({"user_id": "2", "k": 5}, 422, "valid integer"),
    ({"user_id": 2, "k": True}, 422, "valid integer"),
    ({"user_vector": [0.5] * 300_000, "k": 5}, 413, "exceeds the limit"),  # 1.5 MB of JSON
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


def test_health_and_stats(retriever):
    with httpx.Client(base_url=retriever.url, timeout=30) as client:
        health = client.get("/health").json()
        assert health["status"] == "ok" and health["search_in"] == retriever.search_in and health["shards"] == 2
        shard_actors = [a for a in ray.util.list_named_actors(all_namespaces=True)
                        if a["name"].startswith(f"{retriever.prefix}shard-")]
        assert len(shard_actors) == (2 if retriever.search_in == "shard_actors" else 0), shard_actors
        for _ in range(8):
            client.post("/retrieve", json={"user_id": 1, "k": 10})
        stats = client.get("/stats").json()
        assert stats["groups"] == ["group-0", "group-1", "group-2"]
        assert stats["requests"] >= 8 and sum(stats["exposure"]) >= 80
        assert stats["mu_version"] >= 2 and 0.0 <= stats["esp"] <= 1.0 and 0.0 <= stats["fill"] <= 1.0
        assert stats["mu"][2] < 0, "the disliked group is owed exposure, so its dual must have moved"


def test_concurrent_requests_are_batched_and_all_answered(base_url):
    def one(user: int) -> httpx.Response:
        return httpx.post(f"{base_url}/retrieve", json={"user_id": user % 5, "k": 3 + user % 4}, timeout=60)

    before = httpx.get(f"{base_url}/stats", timeout=30).json()
    with ThreadPoolExecutor(16) as pool:
        answers = list(pool.map(one, range(48)))
    after = httpx.get(f"{base_url}/stats", timeout=30).json()
    assert all(a.status_code == 200 for a in answers), [a.text for a in answers if a.status_code != 200]
    assert [len(a.json()["items"]) for a in answers] == [3 + u % 4 for u in range(48)]
    assert after["fanout_requests"] - before["fanout_requests"] == 48
    fanouts = after["fanouts"] - before["fanouts"]
    assert 1 <= fanouts < 48, f"48 requests, 16 at a time, took {fanouts} shard fan-outs: none were batched"


def _kill(name: str) -> int:
    """Kill the actor named ``name`` (Ray restarts it); the dual-vector actor's PID before the kill."""
    named = {a["name"]: a["namespace"] for a in ray.util.list_named_actors(all_namespaces=True)}
    actor = ray.get_actor(name, namespace=named.get(name))
    pid = ray.get(actor.pid.remote()) if name == "dual-vector" else None
    ray.kill(actor, no_restart=False)
    return pid


def test_soak_a_shard_and_the_dual_killed_under_load_loses_and_doubles_nothing(retriever):
    """The benchmark's soak, shortened: 16 clients for ~8 s; shard-1 SIGKILLed after 1.5 s (over
    shard actors), the dual-vector actor after 3.5 s. Every request is answered, those during the
    shard's outage say partial, the shard comes back, and the dual's counters equal exactly what
    was served."""
    base_url, by_shards = retriever.url, retriever.search_in == "shard_actors"
    before = httpx.get(f"{base_url}/stats", timeout=30).json()
    answers, stop = [], threading.Event()

    def client(index: int) -> None:
        with httpx.Client(base_url=base_url, timeout=60) as http:
            while not stop.is_set():
                reply = http.post("/retrieve", json={"user_id": index % 5, "k": 3 + index % 4})
                answers.append((reply.status_code, reply.json() if reply.status_code == 200 else reply.text))

    threads = [threading.Thread(target=client, args=(i,)) for i in range(16)]
    for thread in threads:
        thread.start()
    try:
        time.sleep(1.5)
        if by_shards:
            _kill(f"{retriever.prefix}shard-1")
        time.sleep(2.0)
        old_dual_pid = _kill(f"{retriever.prefix}dual-vector")
        time.sleep(4.5)
    finally:
        stop.set()
        for thread in threads:
            thread.join()
    assert answers and all(status == 200 for status, _ in answers), [a for a in answers if a[0] != 200][:3]
    if by_shards:
        assert any(body["partial"] for _, body in answers), "no answer was marked partial while shard-1 was down"
    else:
        assert not any(body["partial"] for _, body in answers), "an answer searched in the replica was partial"

    deadline = time.time() + 90
    while True:  # the shard reloads its partition from storage and answers again
        response = httpx.post(f"{base_url}/retrieve", json={"user_id": 3, "k": 5}, timeout=60)
        assert response.status_code == 200, response.text
        reply = response.json()
        answers.append((200, reply))
        if not reply["partial"] or time.time() > deadline:
            break
        time.sleep(0.5)
    assert reply["partial"] is False, "the shard did not come back from its partition file"

    after = _wait_for_stats(base_url)
    assert after["unreported"] == 0
    assert after["requests"] - before["requests"] == len(answers)
    served = sum(len(body["items"]) for _, body in answers)
    assert sum(after["exposure"]) - sum(before["exposure"]) == pytest.approx(served), "lost or double-counted"
    assert ray.get(_dual(retriever.prefix).pid.remote()) != old_dual_pid, "the dual-vector actor was not restarted"


def _wait_for_stats(base_url: str) -> dict:
    """/stats once every served batch is reported: it answers 503 while the dual-vector actor is
    still restarting, and may say ``unreported`` > 0 for a while after (each /stats flushes
    for at most 5 s, and a dual just back from its saved state can be slower on a loaded machine)."""
    deadline = time.time() + 60
    while True:
        response = httpx.get(f"{base_url}/stats", timeout=60)
        if response.status_code == 200 and (response.json()["unreported"] == 0 or time.time() > deadline):
            return response.json()
        if response.status_code != 200:
            assert time.time() < deadline, response.text
            assert response.status_code == 503 and "restarting" in response.text, response.text
        time.sleep(0.5)


def _dual(prefix: str):
    named = {a["name"]: a["namespace"] for a in ray.util.list_named_actors(all_namespaces=True)}
    return ray.get_actor(f"{prefix}dual-vector", namespace=named.get(f"{prefix}dual-vector"))


def _retriever_replica():
    names = [a for a in ray.util.list_named_actors(all_namespaces=True)
             if a["namespace"] == "serve" and "fair-retriever" in a["name"] and "FairRetriever" in a["name"]]
    assert len(names) == 1, names
    return ray.get_actor(names[0]["name"], namespace="serve")


def test_a_replica_sigkilled_under_wrk_load_leaves_no_received_list_uncounted(retriever):
    """wrk at 16 connections; 1.5 s in, the dual-vector actor is killed, and 0.5 s later, while
    Ray brings it back, the retriever's Serve replica is SIGKILLed (Serve starts a new one).
    Every list wrk received was journalled before it was sent (write-ahead), and the new replica
    adopts the dead one's journal, so each is counted, once; the dual may count beyond it only
    what the dead replica had journalled but not yet sent: at most its requests in flight
    (4 × 64). A replica that served first and reported after, or a journal nobody adopted,
    would lose the reports of the dual's outage."""
    import os
    import shutil
    import signal

    from jobs.lib.wrk_load import start_wrk

    base_url = retriever.url

    if shutil.which("wrk") is None:
        if os.environ.get("FAIRFLEET_REQUIRE_WRK") == "1":
            pytest.fail("wrk is not installed and FAIRFLEET_REQUIRE_WRK=1")
        pytest.skip("wrk is not installed (apt-get install wrk)")
    assert httpx.post(f"{base_url}/retrieve", json={"user_id": 1, "k": 4}, timeout=60).status_code == 200  # warm
    before = _wait_for_stats(base_url)
    replica = _retriever_replica()
    pid = ray.get(replica.__ray_call__.remote(lambda _: os.getpid()))
    _, finish = start_wrk(f"{base_url}/retrieve", concurrency=16, duration_s=8, n_users=5, k=4)
    time.sleep(1.5)
    _kill(f"{retriever.prefix}dual-vector")
    time.sleep(0.5)
    os.kill(pid, signal.SIGKILL)
    load = finish()
    received = load.requests - load.non_2xx
    assert received > 0, load.raw
    deadline = time.time() + 120
    while httpx.get(f"{base_url}/health", timeout=30).status_code != 200:  # Serve has started a new replica
        assert time.time() < deadline, "the retriever did not come back"
        time.sleep(0.5)
    after = _wait_for_stats(base_url)
    counted = after["requests"] - before["requests"]
    assert received <= counted <= received + 4 * 64, (received, counted, load.raw)
    assert sum(after["exposure"]) - sum(before["exposure"]) >= received * 4
