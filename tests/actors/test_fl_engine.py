"""The FL engine on real Ray actors: names, a round, dashboard metrics, determinism across
worker counts, a worker killed mid-round, and the aggregator killed mid-run (resume after a
crash: tests/actors/test_s3_storage.py)."""

from __future__ import annotations

import json
import re
import threading
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import ray


from actors.factory import start_aggregator, start_workers, worker_names
from cluster.fl.shard import save_shards
from cluster.fl.inprocess import trained_loop
from cluster.storage import Storage
from configs import load_config
from cluster.fl.experiment import build
from jobs.fl_sim import run

pytestmark = pytest.mark.usefixtures("ray_session")


def tiny(tmp_path: Path, *extra: str):
    return load_config("configs/demo.yaml", [
        "data.synthetic.n_users=240", "data.synthetic.n_items=300", "data.synthetic.target_interactions=5000",
        "fl.clients_per_round=40", "fl.rounds=4", "fl.checkpoint_every=2", "fl.overselect=0", "fl.eval_every=1",
        f"data.cache_dir={tmp_path / 'cache'}",
        f"storage={tmp_path / 'runs'}", *extra,
    ])


@pytest.fixture(scope="module")
def reference_run(tmp_path_factory) -> dict:
    """One uninterrupted run, one core per tier, in process (an actor run equals it:
    tests/actors/test_strategies_on_actors.py): what the worker-count and aggregator-restart
    tests must each reproduce exactly."""
    folder = tmp_path_factory.mktemp("reference")
    loop = trained_loop(build(tiny(folder, "fl.rounds=6", "fl.eval_every=3")), eval_every=3)
    server, history = loop.server, loop.history
    return {"history": history, "params": server.params}


def start(exp, run_dir: Path):
    run = Storage(run_dir)
    save_shards(exp.shards(), worker_names(exp.cfg.fl, exp.fleet.tiers.names), run / "shards")
    workers = start_workers(exp.cfg.fl, exp.worker_setup(), exp.fleet.tiers.names, run)
    aggregator = start_aggregator(exp.server_setup(), run / "checkpoint", run_name=run.name)
    ray.get([w.ready.remote() for w in workers] + [aggregator.ready.remote()])
    return workers, aggregator


def stop(*handles):
    for handle in handles:
        ray.kill(handle, no_restart=True)


def _scrape(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        return response.read().decode()


def _metrics(history):
    keys = [k for k in history[-1] if k.startswith(("hr10", "ndcg10", "train_loss", "aggregated", "sim_"))]
    return [{k: row.get(k) for k in keys} for row in history]


def _until_busy(worker, timeout_s: float = 60.0) -> None:
    """Return once ``worker`` is inside a call: an actor runs one call at a time, so a cheap call
    that does not answer at once waits behind one. A fixed sleep instead raced the aggregator,
    which on a loaded machine had not yet sent the round when the worker was killed."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        answered, _ = ray.wait([worker.ready.remote()], timeout=0.3)
        if not answered:
            return
        time.sleep(0.05)
    raise AssertionError("the worker never started the round's call")


def test_named_actors_metrics_and_a_worker_killed_mid_round_reach_the_reference_exactly(tmp_path: Path, ray_session,
                                                                                       reference_run):
    """One set of actors (each costs a process start) for two things: the named actors and the
    dashboard's metrics, and a low-tier worker killed inside round 3's training.
    Ray brings it back with its clients at the round-2 checkpoint; the next call to it finds it
    out of sync, the run goes back to that checkpoint and replays round 3, so the run ends
    exactly as the uninterrupted one-worker reference does."""
    exp = build(tiny(tmp_path, "fl.rounds=6", "fl.eval_every=3", "fl.runtime.workers_per_tier=2",
                     "fl.runtime.real_time_scale=0.5", "fl.runtime.worker_max_restarts=2"))
    workers, aggregator = start(exp, tmp_path / "run")
    try:
        for name in ("aggregator", "clients-low-0", "clients-low-1", "clients-mid-0", "clients-high-1"):
            assert ray.get_actor(name) is not None  # raises ValueError when no such named actor
        record = ray.get(aggregator.run_round.remote())
        assert record["selected"] == record["aggregated"] == 40 and record["failed"] == 0
        assert record["sim_round_s"] > 0 and record["wall_s"] > 0
        ray.get(aggregator.run_round.remote())  # round 2 checkpoints
        assert json.loads((tmp_path / "run" / "checkpoint" / "latest.json").read_text())["round"] == 2

        pending = aggregator.run_round.remote()
        _until_busy(workers[0])  # inside round 3's call, sleeping out its clients' scaled latency
        ray.kill(workers[0], no_restart=False)  # clients-low-0: half of the low tier's clients
        killed_round = ray.get(pending)
        if ray.get(aggregator.resyncs.remote()):
            # Ray brought the worker back before the round's evaluation reached it: the round was
            # already replayed from the checkpoint, and its record is the replay's.
            assert killed_round["failed"] == 0, killed_round
        else:
            assert killed_round["failed_low"] > 0 and killed_round["failed"] == killed_round["failed_low"], killed_round
        for _ in range(3):
            ray.get(aggregator.run_round.remote())
        _check_dashboard_metrics(ray_session, rounds=6)
        assert ray.get(aggregator.resyncs.remote()) == 1
        history = ray.get(aggregator.history_rows.remote())
        assert sum(r["failed"] for r in history) == 0, "the replayed round 3 lost no client"
        assert _metrics(history) == _metrics(reference_run["history"])
        params = ray.get(aggregator.global_params.remote())
        for name in reference_run["params"]:
            assert np.array_equal(params[name], reference_run["params"][name]), name
    finally:
        stop(aggregator, *workers)


def _check_dashboard_metrics(port: int, rounds: int) -> None:
    """Ray exports every second: wait until the gauge shows the last round, then read the rest."""
    finished = re.compile(r'fairfleet_round\{[^}]*\} ' + str(rounds) + r'(\.0)?\b')
    deadline = time.time() + 60
    text = ""
    while time.time() < deadline:
        text = _scrape(port)
        if finished.search(text) and re.search(r'fairfleet_hr10\{[^}]*tier="low"', text):
            break
        time.sleep(1)
    assert finished.search(text), text[-2000:]
    assert re.search(r'fairfleet_clients_selected\{[^}]*tier="low"', text) and "fairfleet_clients_dropped" in text
    assert re.search(r'fairfleet_hr10\{[^}]*tier="all"', text)
    assert "fairfleet_client_updates_per_second" in text and "fairfleet_sim_round_seconds" in text


def test_two_workers_per_tier_and_a_killed_aggregator_reach_the_reference_exactly(tmp_path: Path, reference_run):
    """Each tier's clients dealt round-robin over two workers, and the aggregator killed after
    its first checkpoint: neither may change a bit of the uninterrupted one-worker run. (One run
    tests both: each actor run costs ~7 process starts on two cores; in process,
    tests/unit/test_strategies.py and test_click_rounds.py compare one and three workers per tier.)"""
    reference = reference_run

    run_dir = tmp_path / "killed"
    killed = []

    def kill_after_first_checkpoint():
        deadline = time.time() + 120
        while time.time() < deadline and not (run_dir / "checkpoint" / "latest.json").exists():
            time.sleep(0.05)
        aggregator = ray.get_actor("aggregator")
        killed.append(ray.get(aggregator.ready.remote()))
        ray.kill(aggregator, no_restart=False)  # as a node failure would: Ray may restart it

    # Slowed to about a second a round so the kill lands mid-run; the slowing changes no result.
    slow = build(tiny(tmp_path, "fl.rounds=6", "fl.eval_every=3", "fl.runtime.real_time_scale=0.3",
                      "fl.runtime.workers_per_tier=2"))
    killer = threading.Thread(target=kill_after_first_checkpoint)
    killer.start()
    outcome = run(slow, Storage(run_dir), False, None, quiet=True)
    killer.join()
    assert killed and 2 <= killed[0] < 6, killed
    assert outcome["aggregator_restarts"] == 1
    assert _metrics(outcome["history"]) == _metrics(reference["history"])
    for name in reference["params"]:
        assert np.array_equal(outcome["params"][name], reference["params"][name])


def test_workers_that_keep_timing_out_stop_the_run_with_exit_3_and_the_resume_command(tmp_path: Path, capsys):
    """Every train call outlasts the round timeout: the run goes back to its start three times,
    then stops, naming the setting and the command that continues it."""
    from jobs.fl_sim import main

    sets = ["data.synthetic.n_users=240", "data.synthetic.n_items=300", "data.synthetic.target_interactions=5000",
            "fl.clients_per_round=40", "fl.rounds=2", "fl.overselect=0", f"data.cache_dir={tmp_path / 'cache'}",
            "fl.runtime.real_time_scale=0.1", "fl.runtime.round_timeout_s=0.05"]
    code = main(["--config", "configs/demo.yaml", *[a for s in sets for a in ("--set", s)],
                 "--storage", str(tmp_path / "runs")])
    err = capsys.readouterr().err
    assert code == 3, err[-2000:]
    assert "round_timeout_s" in err and "--resume" in err and str(tmp_path / "runs") in err, err[-2000:]


def test_an_aggregator_that_cannot_come_back_stops_the_run_with_exit_3_and_the_resume_command(tmp_path: Path,
                                                                                              capsys):
    """No restarts left (``aggregator_max_restarts=0``) and the aggregator killed mid-run: the job
    says what happened and how to continue, and exits 3; the run folder keeps its checkpoint."""
    from jobs.fl_sim import main

    runs = tmp_path / "runs"
    sets = ["data.synthetic.n_users=240", "data.synthetic.n_items=300", "data.synthetic.target_interactions=5000",
            "fl.clients_per_round=40", "fl.rounds=8", "fl.checkpoint_every=2", "fl.overselect=0",
            f"data.cache_dir={tmp_path / 'cache'}", "fl.runtime.real_time_scale=0.3",
            "fl.runtime.aggregator_max_restarts=0"]

    def kill_after_first_checkpoint():
        deadline = time.time() + 120
        while time.time() < deadline and not list(runs.glob("fl-*/checkpoint/latest.json")):
            time.sleep(0.05)
        ray.kill(ray.get_actor("aggregator"))

    killer = threading.Thread(target=kill_after_first_checkpoint)
    killer.start()
    code = main(["--config", "configs/demo.yaml", *[a for s in sets for a in ("--set", s)], "--storage", str(runs)])
    killer.join()
    err = capsys.readouterr().err
    assert code == 3, err[-2000:]
    (run,) = runs.glob("fl-*")
    assert "could not be restarted" in err and f"--resume '{run}'" in err, err[-2000:]
    assert json.loads((run / "checkpoint" / "latest.json").read_text())["round"] >= 2


def test_a_finished_run_has_its_plots_and_page_and_resuming_it_leaves_its_folder_alone(tmp_path: Path, capsys):
    """One short run (evaluated once, at its last round) for two things: the plots summary.json
    lists and the --report page with the same plots beside it; then --resume on it, which says
    there is nothing left and writes nothing."""
    from jobs.fl_sim import main
    from jobs.lib.results_page import machine_line

    sets = ["data.synthetic.n_users=240", "data.synthetic.n_items=300", "data.synthetic.target_interactions=5000",
            "fl.clients_per_round=40", "fl.rounds=2", "fl.checkpoint_every=2", "fl.overselect=0",
            f"data.cache_dir={tmp_path / 'cache'}"]
    args = ["--config", "configs/demo.yaml", *[a for s in sets for a in ("--set", s)],
            "--storage", str(tmp_path / "runs"), "--report", str(tmp_path / "site" / "fl-demo.md")]
    assert main(args) == 0
    (run,) = (tmp_path / "runs").glob("fl-*")
    plots = json.loads((run / "summary.json").read_text())["plots"]
    assert sorted(plots) == ["clients_lost_by_round", "quality_by_round", "quality_by_sim_time"]
    for rel in plots.values():
        assert (run / rel).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and (run / rel).stat().st_size > 15_000, rel

    page = (tmp_path / "site" / "fl-demo.md").read_text()
    assert page.startswith("# Federated NCF on synthetic, 240 users × 300 items (GMF, FedAvg; config demo)")
    assert "`python jobs/fl_sim.py --config configs/demo.yaml --set" in page and "--report" in page
    assert f"| machine | {machine_line()} |" in page and "| seeds | 0 (1 seed) |" in page
    assert "| tier | HR@10 | NDCG@10 | selected | dropped | failed |" in page and "client updates/s" in page
    for rel in plots.values():
        name = Path(rel).name
        assert f"](fl-demo/{name})" in page, name
        assert (tmp_path / "site" / "fl-demo" / name).read_bytes() == (run / rel).read_bytes()

    written = {p: p.stat().st_mtime_ns for p in run.rglob("*") if p.is_file()}
    capsys.readouterr()
    assert main(["--resume", str(run)]) == 0
    assert "nothing to resume" in capsys.readouterr().out
    assert {p: p.stat().st_mtime_ns for p in run.rglob("*") if p.is_file()} == written


def test_a_w0_over_rays_inline_limit_reaches_the_aggregator_through_storage(tmp_path: Path, capfd):
    """Ray puts a constructor argument over 100 KB in the object store and warns that a restartable
    actor may not get it back; w⁰ goes through the checkpoint folder instead, bit for bit."""
    exp = build(tiny(tmp_path, "model.embedding_dim=128"))
    setup = exp.server_setup()
    drawn = setup.ops.init_params(setup.seed)
    assert sum(v.nbytes for v in drawn.values()) > 100 * 1024
    capfd.readouterr()
    workers, aggregator = start(exp, tmp_path / "wide")
    try:
        stored = ray.get(aggregator.global_params.remote())
        assert "constructor arguments in the object store" not in capfd.readouterr().err
    finally:
        stop(aggregator, *workers)
    assert (tmp_path / "wide" / "checkpoint" / "initial.npz").exists()
    assert all(np.array_equal(stored[n], drawn[n]) for n in drawn)
