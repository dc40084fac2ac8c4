"""The job front door: bad input exits 2 with a message and writes nothing."""

import subprocess
import sys
from pathlib import Path

from tests.conftest import REPO_ROOT


def _run(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(REPO_ROOT / "jobs" / "build_world.py"), *args],
        cwd=cwd, capture_output=True, text=True, timeout=300,
    )


def test_bad_config_exits_2_and_writes_nothing(tmp_path: Path):
    out = tmp_path / "runs"
    result = _run("--config", str(REPO_ROOT / "configs/demo.yaml"), "--set", f"storage={out}",
                  "--set", "fl.rounds=0", cwd=tmp_path)
    assert result.returncode == 2
    assert "fl.rounds" in result.stderr and "Traceback" not in result.stderr
    assert not out.exists()


def test_malformed_data_exits_2_naming_file_and_line(tmp_path: Path):
    data = tmp_path / "ml"
    data.mkdir()
    (data / "u.data").write_text("1\t1\t5\t100\n2\tx\t3\t200\n")
    out = tmp_path / "runs"
    result = _run("--config", str(REPO_ROOT / "configs/ml100k.yaml"), "--set", f"data.path={data}",
                  "--set", f"storage={out}", "--set", f"data.cache_dir={tmp_path / 'cache'}", cwd=tmp_path)
    assert result.returncode == 2
    assert f"{data / 'u.data'}:2" in result.stderr
    assert not out.exists()


def test_world_job_writes_outputs(tmp_path: Path):
    import pyarrow.parquet as pq

    out = tmp_path / "runs"
    result = _run("--config", str(REPO_ROOT / "configs/demo.yaml"), "--set", f"storage={out}",
                  "--set", "data.synthetic.n_users=300", "--set", "data.synthetic.target_interactions=6000",
                  "--set", f"data.cache_dir={tmp_path / 'cache'}", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    (run,) = out.iterdir()
    table = pq.read_table(run / "population.parquet")
    assert table.num_rows == 300
    assert set(table.column("tier").to_pylist()) <= {"low", "mid", "high"}
    assert {"config.yaml", "summary.json"} <= {p.name for p in run.iterdir()}
    assert "heterogeneity" in result.stdout


def _fl_sim(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(REPO_ROOT / "jobs" / "fl_sim.py"), *args],
                          cwd=cwd, capture_output=True, text=True, timeout=300)


def test_fl_sim_rejects_bad_input_before_starting_ray(tmp_path: Path):
    out = tmp_path / "runs"
    bad = _fl_sim("--config", str(REPO_ROOT / "configs/demo.yaml"), "--set", f"storage={out}",
                  "--set", "fl.server_optimizer=lamb", cwd=tmp_path)
    assert bad.returncode == 2 and "fl.server_optimizer" in bad.stderr and "Traceback" not in bad.stderr
    assert not out.exists()
    missing = _fl_sim("--resume", str(tmp_path / "no-such-run"), cwd=tmp_path)
    assert missing.returncode == 2 and "no checkpoint to resume from" in missing.stderr


def test_fl_sim_resume_from_a_corrupt_or_foreign_checkpoint_exits_2(tmp_path: Path):
    from cluster import checkpoint
    from cluster.storage import Storage

    run = tmp_path / "run"
    (run / "checkpoint" / "round-000002").mkdir(parents=True)
    (run / "config.yaml").write_text((REPO_ROOT / "configs/demo.yaml").read_text())
    (run / "checkpoint" / "latest.json").write_text("{not json")
    corrupt = _fl_sim("--resume", str(run), cwd=tmp_path)
    assert corrupt.returncode == 2 and "latest.json: not valid JSON" in corrupt.stderr
    assert "Traceback" not in corrupt.stderr

    checkpoint.commit(Storage(run / "checkpoint"), 2)
    (run / "checkpoint" / "round-000002" / "aggregator.npz").write_bytes(b"PK\x03\x04 truncated")
    broken = _fl_sim("--resume", str(run), "--set", "fl.rounds=3", "--set", "data.synthetic.n_users=200",
                     "--set", "data.synthetic.target_interactions=3000", "--set", f"data.cache_dir={tmp_path / 'c'}",
                     cwd=tmp_path)
    assert broken.returncode == 2, broken.stderr[-2000:]
    assert "aggregator.npz: not a readable .npz" in broken.stderr and "Traceback" not in broken.stderr
