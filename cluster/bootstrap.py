"""Start or join Ray: the one module under cluster/ allowed to import it."""

from __future__ import annotations

import logging
import os
from typing import Optional

import ray


def init_ray(
    address: Optional[str] = None,
    num_cpus: Optional[int] = None,
    metrics_export_port: Optional[int] = None,
    namespace: str = "fairfleet",
) -> bool:
    """Join the cluster at ``address`` (or ``$RAY_ADDRESS``, set by ``ray job submit``); with
    neither, start a private local one. Returns True when this call started Ray.

    A job that joins an existing cluster inherits its dashboard and metrics export; a private
    local cluster gets the dashboard and, when asked, a Prometheus export port.
    """
    if ray.is_initialized():
        return False
    address = address or os.environ.get("RAY_ADDRESS")
    if address and address != "local":
        ray.init(address=address, namespace=namespace, logging_level=logging.WARNING)
        return True
    ray.init(
        address="local",
        num_cpus=num_cpus,
        namespace=namespace,
        logging_level=logging.WARNING,
        # None (also for 0) is Ray's own default: no Prometheus export port
        _metrics_export_port=metrics_export_port or None,
    )
    return True
