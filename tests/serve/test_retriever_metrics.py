"""The fair retriever's Prometheus series, read from the Ray session's metrics export: every
answer counted by route and status (422 and unknown paths included), latency, batch sizes,
served slots per group, a partial answer after a shard is killed, and the dual vector's
exposure, μ, ESP and fill equal to what GET /stats says."""

from __future__ import annotations

import re
import time
import urllib.request

import httpx
import pytest
import ray
from ray import serve

from configs import SimConfig
from serve.retriever import FairRetriever

N_ITEMS, DIM, N_GROUPS, K, PREFIX, APP = 240, 8, 3, 5, "metrics-", "metrics-test"
ROUTE_PREFIX = "/mx"  # not "/": the route label must still read "/retrieve"

_SAMPLE = re.compile(r'^(\w+)\{(.*)\} (\S+)$')
_LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')


def location(path) -> dict:
    """Where the config puts files: ``storage`` (newer configs) or ``output_dir`` (older ones)."""
    return {("storage" if "storage" in SimConfig.model_fields else "output_dir"): str(path)}


def scrape(port: int) -> list[tuple[str, dict, float]]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        text = response.read().decode()
    samples = []
    for line in text.splitlines():
        match = _SAMPLE.match(line)
        if match:
            samples.append((match[1], dict(_LABEL.findall(match[2])), float(match[3])))
    return samples


def total(samples, name: str, **labels) -> float:
    """Sum over every series of ``name`` carrying ``labels`` (one per worker process)."""
    return sum(v for n, tags, v in samples if n == name and all(tags.get(k) == w for k, w in labels.items()))


def per_group(samples, name: str) -> dict[str, float]:
    return {tags["group"]: v for n, tags, v in samples if n == name and tags.get("app") == APP}


@pytest.fixture(scope="module")
def base_url(serve_port, tmp_path_factory):
    cfg = SimConfig.model_validate({
        "name": APP, **location(tmp_path_factory.mktemp("retriever-metrics")),
        "retrieval": {"source": "synthetic", "n_shards": 2, "search_in": "shard_actors", "max_k": 20, "k": K,
                      "policy": {"kind": "fairsync", "batch_size": 2, "lr": 0.2}, "exposure_share": 0.5, "horizon": 50,
                      "synthetic": {"n_items": N_ITEMS, "n_users": 5, "dim": DIM, "n_groups": N_GROUPS,
                                    "disliked_group": 2}},
    })
    serve.run(FairRetriever.bind(cfg, PREFIX), name="metrics-retriever", route_prefix=ROUTE_PREFIX)
    yield f"http://127.0.0.1:{serve_port}{ROUTE_PREFIX}"
    serve.delete("metrics-retriever")


def test_every_answer_and_the_dual_state_reach_the_metrics_export(base_url, ray_session):
    with httpx.Client(base_url=base_url, timeout=60) as client:
        for user in range(6):
            assert client.post("/retrieve", json={"user_id": user % 5, "k": K}).status_code == 200
        assert [client.post("/retrieve", json={"user_id": 999, "k": K}).status_code for _ in range(2)] == [404, 404]
        bad = [client.post("/retrieve", json={"user_id": 1, "k": 0}),
               client.post("/retrieve", content="{not json", headers={"content-type": "application/json"}),
               client.post("/retrieve", json={"user_id": 1, "k": K, "extra": 1})]
        assert [a.status_code for a in bad] == [422, 422, 422]
        assert client.get("/health").status_code == 200
        assert client.get("/no-such-route").status_code == 404

        named = {a["name"]: a["namespace"] for a in ray.util.list_named_actors(all_namespaces=True)}
        ray.kill(ray.get_actor(f"{PREFIX}shard-1", namespace=named.get(f"{PREFIX}shard-1")), no_restart=False)
        partial = client.post("/retrieve", json={"user_id": 3, "k": K})
        assert partial.status_code == 200 and partial.json()["partial"] is True, partial.text
        assert len(partial.json()["items"]) == K

        expected = {
            ("/retrieve", "200"): 7, ("/retrieve", "404"): 2, ("/retrieve", "422"): 3,
            ("/health", "200"): 1, ("other", "404"): 1,
        }
        deadline, samples = time.time() + 60, []
        while time.time() < deadline:
            samples = scrape(ray_session)
            requests = {key: total(samples, "ray_fairfleet_retriever_requests_total", app=APP, route=key[0],
                                   status=key[1]) for key in expected}
            if requests == expected and total(samples, "ray_fairfleet_retriever_partial_answers_total", app=APP):
                break
            time.sleep(0.5)
        assert requests == expected
        errors = total(samples, "ray_fairfleet_retriever_errors_total", app=APP)
        assert errors == 2 + 3 + 1 and not total(samples, "ray_fairfleet_retriever_errors_total", app=APP, status="200")
        assert total(samples, "ray_fairfleet_retriever_latency_seconds_count", app=APP, route="/retrieve") == 12
        assert total(samples, "ray_fairfleet_retriever_latency_seconds_sum", app=APP, route="/retrieve") > 0
        assert total(samples, "ray_fairfleet_retriever_partial_answers_total", app=APP) == 1
        assert total(samples, "ray_fairfleet_retriever_batched_requests_total", app=APP) == 7  # 404/422 never batch
        assert 1 <= total(samples, "ray_fairfleet_retriever_batches_total", app=APP) <= 7
        served = per_group(samples, "ray_fairfleet_retriever_served_items_total")
        assert set(served) <= {f"group-{g}" for g in range(N_GROUPS)} and sum(served.values()) == 7 * K

        # The gauges follow the dual-vector actor's own stats (polled every couple of seconds).
        stats = client.get("/stats").json()
        assert stats["requests"] == 7
        deadline = time.time() + 30
        while time.time() < deadline:
            samples = scrape(ray_session)
            exposure = per_group(samples, "ray_fairfleet_retriever_exposure")
            if exposure == dict(zip(stats["groups"], stats["exposure"])):
                break
            time.sleep(0.5)
        assert exposure == dict(zip(stats["groups"], stats["exposure"]))
        assert sum(exposure.values()) == 7 * K, "every served slot is counted once, as the served-items counter says"
        assert per_group(samples, "ray_fairfleet_retriever_exposure_target") == dict(zip(stats["groups"], stats["m"]))
        mu = per_group(samples, "ray_fairfleet_retriever_mu")
        assert mu == pytest.approx(dict(zip(stats["groups"], stats["mu"]))) and mu["group-2"] < 0
        for name, key in (("esp", "esp"), ("fill", "fill"), ("mu_version", "mu_version"), ("horizon_requests", "requests")):
            values = [v for n, tags, v in samples if n == f"ray_fairfleet_retriever_{name}" and tags.get("app") == APP]
            assert values and values[-1] == pytest.approx(stats[key]), name
