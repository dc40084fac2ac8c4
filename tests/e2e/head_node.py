"""A real Ray head node for end-to-end tests: its own ports and temp dir, stopped by PID."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from cluster.ports import free_port


def ray_cli() -> str:
    """The `ray` script installed beside this Python (a PATH shim may not know it yet)."""
    beside = Path(sys.executable).parent / "ray"
    return str(beside) if beside.exists() else "ray"


@dataclass
class HeadNode:
    process: subprocess.Popen
    dashboard_url: str
    metrics_port: int
    temp_dir: str
    log_path: Path

    @property
    def env(self) -> dict:
        # `ray job submit` needs RAY_AUTH_MODE=token to send the head's token (Ray 2.60).
        return {**os.environ, "RAY_AUTH_MODE": "token"}

    def stop(self) -> None:
        """SIGTERM to the `ray start --block` process only: it drains and stops its own daemons.
        Never `ray stop`, which would end every Ray cluster on the machine."""
        if self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=30)


def start_head(log_dir: Path, timeout_s: float = 180) -> HeadNode:
    from ray.job_submission import JobSubmissionClient

    temp_dir = tempfile.mkdtemp(prefix="ffhead-", dir="/tmp")
    dashboard_port, metrics_port = free_port(), free_port()
    command = [
        ray_cli(), "start", "--head", "--num-cpus", "2", "--disable-usage-stats", "--block",
        "--port", str(free_port()), "--dashboard-host", "127.0.0.1", "--dashboard-port", str(dashboard_port),
        "--dashboard-agent-listen-port", str(free_port()), "--ray-client-server-port", str(free_port()),
        "--metrics-export-port", str(metrics_port), "--temp-dir", temp_dir,
    ]
    log_path = log_dir / "head.log"
    env = {**os.environ, "RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S": "0", "RAY_AUTH_MODE": "token",
           "RAY_metrics_report_interval_ms": "1000"}
    with log_path.open("w") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True, env=env)
    head = HeadNode(process, f"http://127.0.0.1:{dashboard_port}", metrics_port, temp_dir, log_path)
    deadline = time.time() + timeout_s
    while time.time() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"ray start exited with {process.returncode}: {log_path.read_text()[-2000:]}")
        try:
            JobSubmissionClient(head.dashboard_url)
            return head
        except Exception:  # not up yet
            time.sleep(0.5)
    head.stop()
    raise TimeoutError(f"head node did not answer within {timeout_s} s: {log_path.read_text()[-2000:]}")
