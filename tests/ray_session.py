"""One private Ray session per test session, with its own temp dir and free ports."""

from __future__ import annotations

import tempfile

from cluster.ports import free_port


def start_ray_session():
    import ray

    temp_dir = tempfile.mkdtemp(prefix="ffray-", dir="/tmp")  # short: Ray's socket paths have a length limit
    metrics_port = free_port()
    ray.init(
        address="local",
        num_cpus=2,
        include_dashboard=False,
        namespace="tests",
        logging_level="ERROR",
        _temp_dir=temp_dir,
        _metrics_export_port=metrics_port,
        # Export every second instead of every 10 s, so the metrics test does not wait long.
        _system_config={"metrics_report_interval_ms": 1000},
    )
    return metrics_port
