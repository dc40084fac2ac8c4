"""`ray job submit` of the main job to a real head node started by the test."""

from __future__ import annotations

import subprocess

import pyarrow.parquet as pq
import pytest

from tests.conftest import REPO_ROOT
from tests.e2e.head_node import ray_cli, start_head


@pytest.fixture(scope="module")
def head(tmp_path_factory):
    node = start_head(tmp_path_factory.mktemp("head"))
    yield node
    node.stop()


def test_fl_sim_submitted_as_a_ray_job(head, tmp_path):
    out = tmp_path / "runs"
    command = [
        ray_cli(), "job", "submit", "--address", head.dashboard_url, "--working-dir", str(REPO_ROOT),
        "--submission-id", "fairfleet-e2e", "--",
        "python", "jobs/fl_sim.py", "--config", "configs/demo.yaml",
        "--set", "data.synthetic.n_users=300", "--set", "data.synthetic.n_items=300",
        "--set", "data.synthetic.target_interactions=6000", "--set", "fl.rounds=3", "--set", "fl.clients_per_round=30",
        "--set", f"data.cache_dir={tmp_path / 'cache'}", "--set", f"storage={out}",
    ]
    done = subprocess.run(command, env=head.env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "succeeded" in (done.stdout + done.stderr).lower()
    from ray.job_submission import JobStatus, JobSubmissionClient

    assert JobSubmissionClient(head.dashboard_url).get_job_status("fairfleet-e2e") == JobStatus.SUCCEEDED

    (run,) = out.iterdir()
    rounds = pq.read_table(run / "rounds.parquet")
    assert rounds.num_rows == 3 and rounds.column("client_updates").to_pylist() == [30, 30, 30]
    assert {"tiers.parquet", "clients.parquet", "summary.json", "versions.json", "config.yaml"} <= {p.name for p in run.iterdir()}
    assert "HR@10" in done.stdout
