"""One real Ray head node, as a user drives it: `ray job submit -- python jobs/fl_sim.py ...` (a
private NCF run for HR/NDCG and ε), two more fl_sim jobs through the job SDK (a click-model run with CEAG for
AUC and λ, and an asynchronous run for the devices in flight and their staleness) and the fair retriever deployed from the repo's Serve config, under a few requests.

- The CLI job must succeed and write its run folder.
- Prometheus (the Debian package) with configs/monitoring/prometheus.yml scrapes it all: every
  PromQL expression of the Grafana dashboards (and every dashboard variable) must return data.
  Skipped with the reason when `prometheus` is not installed; FAIRFLEET_REQUIRE_PROMETHEUS=1 (CI)
  turns the skip into a failure.

One head for all, since each head and each fl_sim job costs tens of seconds of process starts on
two cores."""

from __future__ import annotations

import json
import math
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pyarrow.parquet as pq
import pytest
import yaml

from cluster.ports import free_port
from jobs.lib.haproxy_cleanup import haproxy_pids, stop_new_haproxies
from configs import SimConfig
from tests.conftest import REPO_ROOT
from tests.e2e.head_node import HeadNode, ray_cli, start_head, stop_process

MONITORING = REPO_ROOT / "configs" / "monitoring"
DASHBOARDS = sorted((MONITORING / "grafana").glob("*.json"))
SD_FILE = "prom_metrics_service_discovery.json"
RATE_INTERVAL = "5s"  # what Grafana's $__rate_interval is at a 1 s scrape interval (4 x scrape)

TINY = ["data.synthetic.n_users=240", "data.synthetic.n_items=300", "data.synthetic.target_interactions=5000",
        "fl.clients_per_round=30", "fl.rounds=3", "fl.checkpoint_every=100"]
# Private, so the dashboard's differential-privacy panel has its ε to show.
NCF_RUN = ["name=prom-ncf", *TINY, "fl.overselect=0.25", "fl.eval_every=1",
           "fl.privacy={kind: central_dp, noise_multiplier: 1.0}"]
SUBMISSION_ID = "fairfleet-e2e"
CEAG_RUN = ["name=prom-ceag", *TINY, "model.kind=dlrm", "model.top_hidden=[32]", "model.history_len=20",
            "fl.overselect=0", "fl.eval_every=2", "fl.client_lr=1.0", "fl.server_optimizer=adagrad",
            "fl.server_lr=0.1", "fl.fairness.kind=ceag", "fl.fairness.buffer_size=20",  # full after a round: ψ, λ move
            "fl.fairness.reference_accuracy={low: 0.6, mid: 0.6, high: 0.6}"]
# Asynchronous, so the dashboard's asynchronous-mode panels have devices in flight and staleness to show.
ASYNC_RUN = ["name=prom-async", *TINY, "fl.overselect=0", "fl.deadline_s=null", "fl.rounds=6", "fl.eval_every=3",
             "fl.mode={kind: async, concurrency: 20, buffer_size: 5}"]


def find(binary: str) -> str | None:
    return shutil.which(binary)


def require(binary: str) -> str:
    path = find(binary)
    if path is None:
        reason = f"{binary} not installed (Debian: apt-get update && apt-get install -y prometheus)"
        if os.environ.get("FAIRFLEET_REQUIRE_PROMETHEUS") == "1":
            pytest.fail(reason + " and FAIRFLEET_REQUIRE_PROMETHEUS=1")
        pytest.skip(reason)
    return path


def location(path: Path) -> str:
    """Where a config puts files: ``storage`` (newer configs) or ``output_dir`` (older ones)."""
    return f"{'storage' if 'storage' in SimConfig.model_fields else 'output_dir'}={path}"


def prometheus_config(sd_file: Path) -> dict:
    """The shipped configs/monitoring/prometheus.yml, scraping every second and reading this
    test's head node's service-discovery file instead of /tmp/ray's."""
    config = yaml.safe_load((MONITORING / "prometheus.yml").read_text())
    (job,) = [j for j in config["scrape_configs"] if j["job_name"] == "ray"]
    (sd,) = job["file_sd_configs"]
    assert sd["files"] == [f"/tmp/ray/{SD_FILE}"], "the shipped config reads Ray's discovery file"
    sd["files"] = [str(sd_file)]
    config["global"].update(scrape_interval="1s", evaluation_interval="1s")
    return config


class Prometheus:
    def __init__(self, binary: str, config: dict, folder: Path):
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "prometheus.yml").write_text(yaml.safe_dump(config))
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = folder / "prometheus.log"
        with self.log.open("w") as log:
            self.process = subprocess.Popen(
                [binary, f"--config.file={folder / 'prometheus.yml'}", f"--storage.tsdb.path={folder / 'data'}",
                 f"--web.listen-address=127.0.0.1:{self.port}", "--log.level=warn"],
                stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.time() + 60
        while time.time() < deadline:
            assert self.process.poll() is None, self.log.read_text()[-2000:]
            try:
                with urllib.request.urlopen(f"{self.url}/-/ready", timeout=2):
                    return
            except OSError:
                time.sleep(0.3)
        self.stop()
        raise TimeoutError(f"prometheus not ready: {self.log.read_text()[-2000:]}")

    def api(self, path: str, **params) -> dict:
        query = urllib.parse.urlencode(params, doseq=True)
        with urllib.request.urlopen(f"{self.url}/api/v1/{path}?{query}", timeout=30) as response:
            body = json.loads(response.read())
        assert body["status"] == "success", body
        return body["data"]

    def series(self, expr: str, start: float) -> list[dict]:
        """A range query as Grafana's time-series panels send it (step 1 s, from ``start`` to now)."""
        return self.api("query_range", query=expr, start=f"{start:.3f}", end=f"{time.time():.3f}", step="1")["result"]

    def stop(self) -> None:
        stop_process(self.process, timeout_s=30)


def submit(client, config: Path, overrides: list[str], cache: Path) -> str:
    """fl_sim as a Ray job from a copy of the repo; its run folder lands in that copy (default storage)."""
    args = [sys.executable, "jobs/fl_sim.py", "--config", str(config), "--set", f"data.cache_dir={cache}"]
    for item in overrides:
        args += ["--set", item]
    deadline = time.time() + 90
    while True:
        try:
            return client.submit_job(entrypoint=shlex.join(args), runtime_env={"working_dir": str(REPO_ROOT)})
        except RuntimeError as exc:  # the head answers before its job agent is up
            if "No available agent" not in str(exc) or time.time() > deadline:
                raise
            time.sleep(1)


def submit_with_cli(head: HeadNode, overrides: list[str], cache: Path, storage: Path) -> subprocess.Popen:
    """The documented way: `ray job submit` (blocking: it streams the job's log and exits with the
    job's outcome), started in the background so the other job and the retriever overlap it."""
    sets = [arg for item in [*overrides, f"data.cache_dir={cache}", f"storage={storage}"] for arg in ("--set", item)]
    command = [ray_cli(), "job", "submit", "--address", head.dashboard_url, "--working-dir", str(REPO_ROOT),
               "--submission-id", SUBMISSION_ID, "--", "python", "jobs/fl_sim.py", "--config", "configs/demo.yaml",
               *sets]
    return subprocess.Popen(command, env=head.env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def deploy_retriever(head: HeadNode, folder: Path) -> int:
    """The repo's Serve config (configs/serve/retriever_synthetic.yaml) through `serve deploy`, on a
    free port and with a smaller catalog; returns the HTTP port."""
    config = yaml.safe_load((REPO_ROOT / "configs" / "serve" / "retriever_synthetic.yaml").read_text())
    port = free_port()
    config["http_options"]["port"] = port
    (app,) = config["applications"]
    app["args"]["config"] = str(REPO_ROOT / app["args"]["config"])
    app["args"]["overrides"] = [
        "name=prom-retriever", location(folder / "retriever"), "retrieval.synthetic.n_items=2000",
        "retrieval.synthetic.n_users=50", "retrieval.n_shards=1", "retrieval.policy.batch_size=4",
    ]
    path = folder / "serve.yaml"
    path.write_text(yaml.safe_dump(config))
    command = [str(Path(ray_cli()).with_name("serve")), "deploy", str(path), "--address", head.dashboard_url]
    for attempt in (1, 2):  # the first deploy also starts Serve, whose proxy may be slow to come up
        done = subprocess.run(command, env=head.env, capture_output=True, text=True, timeout=180)
        if done.returncode == 0:
            break
        print(f"serve deploy attempt {attempt} failed: {done.stderr[-300:]}", flush=True)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    return port


def drive_retriever(port: int) -> None:
    """Wait for the app, then a few dozen requests: good ones (several at once, so batches form),
    an unknown user (404) and bad bodies (422)."""
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 180
    while True:
        try:
            if httpx.get(f"{url}/health", timeout=5).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        assert time.time() < deadline, "the retriever did not come up"
        time.sleep(0.5)

    def one(i: int) -> int:
        return httpx.post(f"{url}/retrieve", json={"user_id": i % 50, "k": 10}, timeout=60).status_code

    for _ in range(3):  # spread over a few seconds, so rate() windows see them
        with ThreadPoolExecutor(8) as pool:
            assert set(pool.map(one, range(16))) == {200}
        assert httpx.post(f"{url}/retrieve", json={"user_id": 10_000, "k": 10}, timeout=30).status_code == 404
        assert httpx.post(f"{url}/retrieve", json={"user_id": 1, "k": 0}, timeout=30).status_code == 422
        assert httpx.get(f"{url}/stats", timeout=30).status_code == 200
        time.sleep(1.0)


def dashboard_queries(path: Path) -> tuple[list[tuple[str, str]], list[str]]:
    """(panel title, PromQL) of every target, and every variable's query."""
    board = json.loads(path.read_text())
    targets = [(panel["title"], target["expr"]) for panel in board["panels"] for target in panel.get("targets", [])]
    variables = [v["query"]["query"] for v in board["templating"]["list"] if v["type"] == "query"]
    return targets, variables


def concrete(expr: str) -> str:
    """As Grafana sends it with "All" selected: variables → .*, $__rate_interval → 4 scrapes."""
    expr = re.sub(r"\$(run|app)\b", ".*", expr).replace("$__rate_interval", RATE_INTERVAL)
    assert "$" not in expr, f"a variable this test does not know: {expr}"
    return expr


def has_data(result: list[dict]) -> bool:
    return any(math.isfinite(float(value)) for series in result for _, value in series["values"])


@pytest.fixture(scope="module")
def monitored(tmp_path_factory):
    """A head node (HAProxy on, as in the RayService), Prometheus on its discovery file when
    installed, the two jobs and the retriever; yields a dict: prometheus (or None), started,
    cli (the `ray job submit` output and exit code), runs (the CLI job's storage)."""
    binary = find("prometheus")
    folder = tmp_path_factory.mktemp("prometheus")
    haproxies_before = haproxy_pids()
    with pytest.MonkeyPatch.context() as env:
        env.setenv("RAY_SERVE_ENABLE_HA_PROXY", "1")
        # On a loaded 2-core machine the proxy actor can take longer to start than Serve's 5 s
        # ready check, and the controller then kills it: give it time instead.
        env.setenv("RAY_SERVE_PROXY_READY_CHECK_TIMEOUT_S", "60")
        env.setenv("RAY_SERVE_PROXY_HEALTH_CHECK_TIMEOUT_S", "60")
        head = start_head(folder)
    prometheus = None
    try:
        started = time.time()
        if binary is not None:
            prometheus = Prometheus(binary, prometheus_config(Path(head.temp_dir) / SD_FILE), folder / "prom")
        from ray.job_submission import JobStatus, JobSubmissionClient

        client = JobSubmissionClient(head.dashboard_url)

        def finish(job: str) -> None:
            deadline = time.time() + 300
            while not (status := client.get_job_status(job)).is_terminal():
                assert time.time() < deadline, f"job {job} still {status}"
                time.sleep(1)
            assert status == JobStatus.SUCCEEDED, client.get_job_logs(job)[-3000:]

        # Both runs at once on the one cluster: each fl_sim joins in a Ray namespace of its own, so
        # their actors' fixed names (aggregator, clients-low-0, ...) do not collide.
        cli = submit_with_cli(head, NCF_RUN, folder / "cache", folder / "runs")
        ceag = submit(client, REPO_ROOT / "configs" / "demo.yaml", CEAG_RUN, folder / "cache")
        asynchronous = submit(client, REPO_ROOT / "configs" / "demo.yaml", ASYNC_RUN, folder / "cache")
        port = deploy_retriever(head, folder)
        print(f"retriever deployed after {time.time() - started:.1f} s", flush=True)
        drive_retriever(port)
        print(f"retriever driven after {time.time() - started:.1f} s", flush=True)
        output, _ = cli.communicate(timeout=300)
        finish(ceag)
        finish(asynchronous)
        print(f"the jobs done after {time.time() - started:.1f} s", flush=True)
        yield {"prometheus": prometheus, "started": started, "cli": (output, cli.returncode), "runs": folder / "runs",
               "client": client}
    finally:
        if prometheus is not None:
            prometheus.stop()
        head.stop()
        stop_new_haproxies(haproxies_before)


def test_fl_sim_submitted_with_ray_job_submit(monitored):
    from ray.job_submission import JobStatus

    output, code = monitored["cli"]
    assert code == 0, output[-3000:]
    assert "succeeded" in output.lower() and "HR@10" in output
    assert monitored["client"].get_job_status(SUBMISSION_ID) == JobStatus.SUCCEEDED
    (run,) = monitored["runs"].iterdir()
    rounds = pq.read_table(run / "rounds.parquet")
    # A private run draws its cohort by Poisson sampling (about 30 × 1.25 a round) and keeps the
    # fastest 1 / 1.25 of whatever it drew.
    updates, selected = rounds.column("client_updates").to_pylist(), rounds.column("selected").to_pylist()
    assert rounds.num_rows == 3 and updates == [math.ceil(n / 1.25 - 1e-9) for n in selected]
    assert all(15 <= n <= 45 for n in updates)
    assert {"tiers.parquet", "clients.parquet", "summary.json", "versions.json", "config.yaml"} <= {
        p.name for p in run.iterdir()}


def test_prometheus_config_passes_promtool():
    promtool = require("promtool")
    done = subprocess.run([promtool, "check", "config", str(MONITORING / "prometheus.yml")],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr


def test_every_dashboard_query_is_valid_promql(tmp_path):
    """promtool parses each query as a recording rule: a syntax error names its panel, fast."""
    promtool = require("promtool")
    rules = [{"record": f"fairfleet_dashboard:query:{i}", "expr": concrete(expr)}
             for i, (_, expr) in enumerate(q for path in DASHBOARDS for q in dashboard_queries(path)[0])]
    assert len(rules) >= 30
    path = tmp_path / "rules.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "fairfleet-dashboards", "rules": rules}]}))
    done = subprocess.run([promtool, "check", "rules", str(path)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr


def test_every_dashboard_query_returns_data(monitored):
    require("prometheus")
    prometheus, started = monitored["prometheus"], monitored["started"]
    # Ray exports every second here and the jobs have ended: wait until the last series are in.
    sentinels = ["ray_fairfleet_ceag_lambda", "ray_fairfleet_hr10", "ray_fairfleet_dp_epsilon", "ray_fairfleet_retriever_esp",
                 "ray_fairfleet_retriever_latency_seconds_bucket", "ray_fairfleet_async_staleness"]
    deadline = time.time() + 60
    while not all(has_data(prometheus.series(s, started)) for s in sentinels):
        assert time.time() < deadline, [s for s in sentinels if not has_data(prometheus.series(s, started))]
        time.sleep(1)
    targets = prometheus.api("targets")["activeTargets"]
    assert targets and {t["labels"]["job"] for t in targets} == {"ray"}, "targets come from Ray's discovery file"

    empty, checked = [], 0
    for path in DASHBOARDS:
        queries, variables = dashboard_queries(path)
        for title, expr in queries:
            checked += 1
            if not has_data(prometheus.series(concrete(expr), started)):
                empty.append(f"{path.name} / {title}: {expr}")
        for variable in variables:
            metric, label = re.fullmatch(r"label_values\((\w+),\s*(\w+)\)", variable).groups()
            values = prometheus.api(f"label/{label}/values", **{"match[]": metric, "start": f"{started:.3f}"})
            if not values:
                empty.append(f"{path.name} / variable {label}: {variable}")
    assert checked >= 30 and not empty, "\n".join(empty)

    runs = prometheus.api("label/run/values", **{"match[]": "ray_fairfleet_round", "start": f"{started:.3f}"})
    assert len(runs) == 3 and {r.rsplit("-", 2)[0] for r in runs} == {"fl-prom-ncf", "fl-prom-ceag", "fl-prom-async"}, runs
    apps = prometheus.api("label/app/values", **{"match[]": "ray_fairfleet_retriever_requests_total",
                                                 "start": f"{started:.3f}"})
    assert apps == ["prom-retriever"]
