"""FairFleet on a real two-node Ray cluster whose second node has a disk of its own.

The head starts with 0 CPUs, so every actor or task that asks for CPU runs on node 2, which
sees an empty tmpfs over the driver's folder (its own mount namespace: what a KubeRay worker pod
sees). The run's storage is a folder both nodes mount, as NFS would be.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas.testing
import pyarrow.parquet as pq
import pytest

from tests.conftest import REPO_ROOT
from tests.e2e.head_node import start_head, start_worker_node

TINY = ["data.synthetic.n_users=240", "data.synthetic.n_items=300", "data.synthetic.target_interactions=5000",
        "fl.clients_per_round=40", "fl.rounds=6", "fl.checkpoint_every=2", "fl.overselect=0", "fl.eval_every=3",
        "fl.runtime.worker_num_cpus=0.5"]
METRICS = ("round", "hr10", "ndcg10", "train_loss", "aggregated", "sim_time_s", "dp_", "secagg_", "staleness_")
# The two-node run is a private one: masks, dropouts and each device's noise must not depend on
# the node, and the accountant's state must survive the aggregator's restart.
PRIVATE = ["fl.upload=dense", "fl.secure_aggregation={kind: secagg, neighbours: 4, dropout: {low: 0.2}}",
           "fl.privacy={kind: distributed_dp, noise_multiplier: 1.0}"]
# Asynchronous, with devices that come and go: the event order and who may start must not depend
# on the node either.
ASYNC = ["fl.deadline_s=null", "fl.mode={kind: async, concurrency: 30, buffer_size: 8}",
         "fl.availability={kind: diurnal, period_s: 60}"]


def _unshare_works() -> str:
    probe = subprocess.run(["unshare", "-m", "--propagation", "private", "true"], capture_output=True, text=True)
    return "" if probe.returncode == 0 else f"unshare -m is not permitted here: {probe.stderr.strip()}"


@pytest.fixture(scope="module")
def cluster():
    reason = _unshare_works()
    if reason:
        if os.environ.get("FAIRFLEET_REQUIRE_MULTINODE") == "1":
            pytest.fail(reason + " and FAIRFLEET_REQUIRE_MULTINODE=1")
        pytest.skip(reason)
    base = Path(tempfile.mkdtemp(prefix="ff2n-", dir="/tmp"))
    hidden, shared = base / "driver", base / "nfs"
    hidden.mkdir()
    shared.mkdir()
    head = start_head(base, num_cpus=0, temp_parent=str(hidden))
    try:
        node = start_worker_node(head, hidden, base)
    except BaseException:
        head.stop()
        raise
    yield head, hidden, shared
    node.stop()
    head.stop()


def _fl_sim(head, storage: Path, *sets: str) -> subprocess.Popen:
    args = [arg for item in (*TINY, *sets) for arg in ("--set", item)]
    return subprocess.Popen(
        [sys.executable, "jobs/fl_sim.py", "--config", "configs/demo.yaml", *args, "--storage", str(storage),
         "--address", head.gcs_address],
        cwd=REPO_ROOT, env=head.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _finish(process: subprocess.Popen, timeout_s: float = 300) -> tuple[str, str]:
    out, err = process.communicate(timeout=timeout_s)
    assert process.returncode == 0, out[-3000:] + err[-3000:]
    return out, err


def _actor(head, name: str):
    """The live incarnation of the named actor (state API over the dashboard), or None."""
    from ray.util.state import list_actors

    alive = list_actors(address=head.dashboard_url, filters=[("name", "=", name), ("state", "=", "ALIVE")])
    return alive[0] if alive else None


def _training(head, actor_id: str) -> bool:
    """Whether the actor is running a ``train`` call now (Ray's task events, ~1 s behind)."""
    from ray.util.state import list_tasks

    running = list_tasks(address=head.dashboard_url, filters=[("state", "=", "RUNNING")])
    return any(t.actor_id == actor_id and t.name.endswith("train") for t in running)


def _wait_for(predicate, timeout_s: float = 120, what: str = "condition"):
    deadline = time.time() + timeout_s
    while time.time() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.2)
    raise TimeoutError(f"{what} not reached within {timeout_s} s")


def _node2_id(head) -> str:
    from ray.util.state import list_nodes

    (node,) = [n for n in list_nodes(address=head.dashboard_url) if n.state == "ALIVE" and not n.is_head_node]
    return node.node_id


def _rounds(run: Path):
    table = pq.read_table(run / "rounds.parquet").to_pandas()
    return table[[c for c in table.columns if c.startswith(METRICS)]]


def test_a_driver_only_folder_is_refused_before_any_worker_starts(cluster):
    head, hidden, _ = cluster
    process = _fl_sim(head, hidden / "runs")
    out, err = process.communicate(timeout=300)
    assert process.returncode == 2, out[-2000:] + err[-2000:]
    assert "is not visible from 1 of 2 nodes" in err and "Traceback" not in err


def test_a_private_fl_sim_equals_one_node_and_survives_its_aggregator_being_killed(cluster, tmp_path):
    from cluster.fl.experiment import build
    from cluster.fl.inprocess import trained_loop
    from configs import load_config
    from jobs.lib.fl_results import rounds_table

    head, _, shared = cluster
    # The one-node reference: the in-process loop, which a one-node actor run equals
    # (tests/actors/test_strategies_on_actors.py), as fl_sim tabulates its rounds.
    cfg = load_config("configs/demo.yaml", [*TINY, *PRIVATE, f"storage={tmp_path / 'one-node'}"])
    history = trained_loop(build(cfg), eval_every=cfg.fl.eval_every).history
    one_node = rounds_table(history, "", cfg.seed).to_pandas()

    # Rounds slowed to ~1 s of wall time each (it changes no result) so the kill lands mid-run.
    process = _fl_sim(head, shared / "runs", "fl.runtime.real_time_scale=0.3", *PRIVATE)
    run = _wait_for(lambda: next((shared / "runs").glob("fl-*"), None), what="run folder")
    _wait_for(lambda: (run / "checkpoint" / "latest.json").exists(), what="first checkpoint")
    aggregator = _wait_for(lambda: _actor(head, "aggregator"), what="aggregator")
    os.kill(aggregator.pid, signal.SIGKILL)
    out, err = _finish(process)
    assert "aggregator restarted: continuing from the checkpoint at round" in out
    summary = json.loads((run / "summary.json").read_text())
    assert summary["aggregator_restarts"] == 1
    # Bit for bit (NaN where a round was not evaluated equals NaN here).
    pandas.testing.assert_frame_equal(_rounds(run), one_node[[c for c in one_node.columns if c.startswith(METRICS)]],
                                      check_exact=True)
    assert not list(run.rglob("*.pkl"))


def test_an_asynchronous_fl_sim_on_two_nodes_equals_one_node(cluster, tmp_path):
    from cluster.fl.experiment import build
    from cluster.fl.inprocess import trained_loop
    from configs import load_config
    from jobs.lib.fl_results import rounds_table

    head, _, shared = cluster
    cfg = load_config("configs/demo.yaml", [*TINY, *ASYNC, f"storage={tmp_path / 'one-node'}"])
    one_node = rounds_table(trained_loop(build(cfg), eval_every=cfg.fl.eval_every).history, "", cfg.seed).to_pandas()
    _finish(_fl_sim(head, shared / "async-runs", *ASYNC))
    (run,) = (shared / "async-runs").glob("fl-*")
    assert (pq.read_table(run / "rounds.parquet").column("staleness_max").to_numpy() > 0).any()
    pandas.testing.assert_frame_equal(_rounds(run), one_node[[c for c in one_node.columns if c.startswith(METRICS)]],
                                      check_exact=True)


def test_a_worker_killed_on_node_2_comes_back_there_from_storage(cluster):
    head, _, shared = cluster
    # Each round's training sleeps ~4 s of scaled latency, so the kill lands inside a train call
    # (a worker killed between rounds is back before the next one and fails nothing).
    process = _fl_sim(head, shared / "killed-worker", "fl.runtime.real_time_scale=1.0", "fl.runtime.worker_max_restarts=2",
                      "fl.rounds=4")
    worker = _wait_for(lambda: _actor(head, "clients-low-0"), what="worker clients-low-0")
    node2 = _node2_id(head)
    assert worker.node_id == node2  # the head has no CPU to give
    _wait_for(lambda: _training(head, worker.actor_id), timeout_s=180, what="a train call on clients-low-0")
    os.kill(worker.pid, signal.SIGKILL)
    back = _wait_for(lambda: (a := _actor(head, "clients-low-0")) is not None and a.pid != worker.pid and a,
                     what="restarted worker")
    assert back.node_id == node2  # reloaded its shard from storage: node 2 never saw the driver's disk
    _finish(process)
    (run,) = (shared / "killed-worker").glob("fl-*")
    rounds = pq.read_table(run / "rounds.parquet").to_pandas()
    # Back with its clients at the last checkpoint (here: the start), it was out of sync: the run
    # went back there and replayed, so no round of the result lost a client.
    assert json.loads((run / "summary.json").read_text())["worker_resyncs"] == 1
    assert len(rounds) == 4 and rounds["failed"].sum() == 0 and (rounds["aggregated"] == rounds["selected"]).all()


def test_grid_cells_run_on_node_2_and_land_in_storage(cluster):
    head, _, shared = cluster
    sets = ["data.synthetic.n_users=240", "data.synthetic.n_items=300", "data.synthetic.target_interactions=6000",
            "model.kind=dlrm", "model.top_hidden=[32]", "model.history_len=20", "fl.overselect=0", "fl.rounds=2",
            "fl.clients_per_round=40", "fl.client_lr=1.0", "fl.server_optimizer=adagrad", "fl.server_lr=0.1"]
    out = shared / "grid"
    done = subprocess.run(
        [sys.executable, "jobs/rf2_matrix.py", "--config", "configs/demo.yaml",
         *[a for s in sets for a in ("--set", s)], "--configurations", "exclude-lo", "--mappings", "random",
         "--out", str(out), "--address", head.gcs_address],
        cwd=REPO_ROOT, env=head.env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    cells = sorted(p.name for p in (out / "cells").iterdir())
    assert len(cells) == 4 and sum(n.endswith(".rounds.parquet") for n in cells) == 2
    assert (out / "matrix.md").exists()


def test_retriever_shards_on_node_2_answer_over_http_and_a_killed_one_comes_back(cluster, tmp_path):
    import httpx
    import yaml

    from cluster.ports import free_port

    head, _, shared = cluster
    port = free_port()
    serve_config = tmp_path / "serve.yaml"
    serve_config.write_text(yaml.safe_dump({
        "proxy_location": "HeadOnly", "http_options": {"host": "127.0.0.1", "port": port},
        "applications": [{"name": "fair-retriever", "route_prefix": "/", "import_path": "serve.app:build_app",
                          "args": {"config": "configs/retrieval_skewed.yaml", "overrides": [
                              f"storage={shared / 'serve'}", "retrieval.search_in=shard_actors",
                              "retrieval.shard_num_cpus=0.5", "retrieval.n_shards=2",
                              "retrieval.synthetic.n_items=2000", "retrieval.synthetic.n_users=50"]}}],
    }))
    serve_cli = str(Path(sys.executable).parent / "serve")
    # A file, not a pipe: serve run streams every replica's log lines, and once a pipe nobody
    # reads is full it blocks in write() and cannot finish shutting down on Ctrl-C.
    log = tmp_path / "serve-run.log"
    with log.open("w") as sink:
        process = subprocess.Popen([serve_cli, "run", "--address", head.gcs_address, str(serve_config)],
                                   cwd=REPO_ROOT, env=head.env, stdout=sink, stderr=subprocess.STDOUT,
                                   start_new_session=True, preexec_fn=_ctrl_c_default)
    url = f"http://127.0.0.1:{port}"

    def answer() -> dict | None:
        try:
            reply = httpx.post(f"{url}/retrieve", json={"user_id": 3, "k": 5}, timeout=10)
        except httpx.HTTPError:
            return None
        return reply.json() if reply.status_code == 200 else None

    try:
        first = _wait_for(answer, timeout_s=240, what="the retriever answering over HTTP")
        assert len(first["items"]) == 5 and first["partial"] is False
        node2 = _node2_id(head)
        shard = _actor(head, "shard-0")
        assert shard.node_id == node2  # it asked for CPU: only node 2 has some
        assert (shared / "serve").exists() and list((shared / "serve").glob("serve-*/shards/shard-0.npz"))
        os.kill(shard.pid, signal.SIGKILL)
        back = _wait_for(lambda: (a := _actor(head, "shard-0")) is not None and a.pid != shard.pid and a,
                         what="restarted shard")
        assert back.node_id == node2  # reloaded its partition from storage, on node 2
        again = _wait_for(lambda: (a := answer()) is not None and not a["partial"] and a, what="a full answer")
        assert len(again["items"]) == 5
    except Exception:
        print(log.read_text()[-4000:])
        raise
    finally:
        _stop_serve_run(process, log)


def _ctrl_c_default() -> None:
    """A job started in the background by a non-interactive shell (a CI runner) inherits SIGINT
    ignored, and so would serve run: it then sleeps through Ctrl-C (seen in a clean CI-like run,
    py-spy: its main thread idle in its sleep loop after the signal)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _stop_serve_run(process: subprocess.Popen, log: Path) -> None:
    """Ctrl-C, on which serve run shuts the app down; the cluster goes right after, so one that
    does not exit within 15 s is killed, with its stacks (py-spy ships with Ray) added to its log."""
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGINT)
    try:
        process.wait(timeout=15)
        return
    except subprocess.TimeoutExpired:
        py_spy = Path(sys.executable).parent / "py-spy"
        with log.open("a") as sink:
            subprocess.run([str(py_spy), "dump", "--pid", str(process.pid)], stdout=sink, stderr=subprocess.STDOUT,
                           timeout=30, check=False)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait(timeout=30)
