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


def _venv_env() -> dict:
    """This environment with its interpreter's folder first on PATH (as `activate` does), so a
    job's `python` on the node is the one the tests run under, not whatever else PATH finds."""
    return {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}


def stop_process(process: subprocess.Popen, timeout_s: float = 60, group: bool = False,
                 first: int = signal.SIGTERM) -> None:
    """End one process a test started, by PID: ``first`` (SIGTERM), then SIGKILL after ``timeout_s``
    (to its whole process group when ``group``, for a process started in a session of its own)."""
    if process.poll() is not None:
        return
    (os.killpg if group else os.kill)(process.pid, first)
    try:
        process.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        (os.killpg if group else os.kill)(process.pid, signal.SIGKILL)
        process.wait(timeout=30)


@dataclass
class HeadNode:
    process: subprocess.Popen
    dashboard_url: str
    metrics_port: int
    temp_dir: str
    log_path: Path
    gcs_address: str = ""

    @property
    def env(self) -> dict:
        # `ray job submit` needs RAY_AUTH_MODE=token to send the head's token (Ray 2.60).
        return {**_venv_env(), "RAY_AUTH_MODE": "token"}

    def stop(self) -> None:
        """SIGTERM to the `ray start --block` process only: it drains and stops its own daemons.
        Never `ray stop`, which would end every Ray cluster on the machine."""
        stop_process(self.process, timeout_s=60, group=True)


def start_head(log_dir: Path, timeout_s: float = 180, num_cpus: int = 2, temp_parent: str = "/tmp") -> HeadNode:
    """``num_cpus=0`` keeps every actor that asks for CPU off the head, as on a KubeRay head pod."""
    from ray.job_submission import JobSubmissionClient

    temp_dir = tempfile.mkdtemp(prefix="ffhead-", dir=temp_parent)
    dashboard_port, metrics_port, gcs_port = free_port(), free_port(), free_port()
    command = [
        ray_cli(), "start", "--head", "--num-cpus", str(num_cpus), "--disable-usage-stats", "--block",
        "--port", str(gcs_port), "--dashboard-host", "127.0.0.1", "--dashboard-port", str(dashboard_port),
        "--dashboard-agent-listen-port", str(free_port()), "--ray-client-server-port", str(free_port()),
        "--metrics-export-port", str(metrics_port), "--temp-dir", temp_dir,
    ]
    log_path = log_dir / "head.log"
    env = {**_venv_env(), "RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S": "0", "RAY_AUTH_MODE": "token",
           "RAY_metrics_report_interval_ms": "1000"}
    with log_path.open("w") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True, env=env)
    head = HeadNode(process, f"http://127.0.0.1:{dashboard_port}", metrics_port, temp_dir, log_path,
                    f"127.0.0.1:{gcs_port}")
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


@dataclass
class WorkerNode:
    """A second Ray node with a filesystem of its own where it matters: ``hidden`` is an empty
    tmpfs in its mount namespace, as a KubeRay worker pod sees nothing of the head pod's disk."""

    process: subprocess.Popen
    log_path: Path

    def stop(self) -> None:
        stop_process(self.process, timeout_s=60, group=True)


def start_worker_node(head: HeadNode, hidden: Path, log_dir: Path, num_cpus: int = 2,
                      timeout_s: float = 180) -> WorkerNode:
    hidden.mkdir(parents=True, exist_ok=True)
    script = (f"mount -t tmpfs fairfleet-node2 {hidden} && exec {ray_cli()} start --address {head.gcs_address} "
              f"--num-cpus {num_cpus} --disable-usage-stats --block --dashboard-agent-listen-port {free_port()} "
              f"--metrics-export-port {free_port()}")
    log_path = log_dir / "node2.log"
    env = {**_venv_env(), "RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S": "0", "RAY_AUTH_MODE": "token"}
    with log_path.open("w") as log:
        process = subprocess.Popen(["unshare", "-m", "--propagation", "private", "bash", "-c", script], stdout=log,
                                   stderr=subprocess.STDOUT, start_new_session=True, env=env)
    node = WorkerNode(process, log_path)
    deadline = time.time() + timeout_s
    from ray.util.state import list_nodes

    while time.time() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"node 2 exited with {process.returncode}: {log_path.read_text()[-2000:]}")
        try:
            alive = [n for n in list_nodes(address=head.dashboard_url) if n.state == "ALIVE"]
            if len(alive) >= 2:
                return node
        except Exception:  # dashboard not answering yet
            pass
        time.sleep(1.0)
    node.stop()
    raise TimeoutError(f"node 2 did not join within {timeout_s} s: {log_path.read_text()[-2000:]}")
