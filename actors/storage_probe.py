"""Check, before any actor depends on it, that every node of the cluster sees the run's storage.

A local path on the driver means nothing to a node with a disk of its own (a KubeRay pod): its
workers would fail later, one by one, with "no such file". One zero-CPU task per node reads a
marker the driver has just written and names the nodes that cannot.
"""

from __future__ import annotations

import uuid

import ray
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from cluster.storage import Storage, StorageError


class StorageUnreachable(StorageError):
    """Some node of the cluster cannot read the run's storage (a bad --storage: exit 2)."""


def _sees(storage: Storage, name: str) -> bool:
    return storage.exists(name)


def check_storage_on_every_node(storage: Storage, timeout_s: float = 120.0) -> int:
    """The number of nodes checked; StorageUnreachable naming those that cannot read ``storage``."""
    name = f".probe-{uuid.uuid4().hex}"
    storage.write_text(name, "fairfleet storage probe\n")
    try:
        nodes = [n for n in ray.nodes() if n.get("Alive")]
        if len(nodes) < 2:
            return len(nodes)
        probe = ray.remote(num_cpus=0, max_retries=0)(_sees)
        refs = [
            probe.options(scheduling_strategy=NodeAffinitySchedulingStrategy(n["NodeID"], soft=False)).remote(
                storage, name
            )
            for n in nodes
        ]
        seen = ray.get(refs, timeout=timeout_s)
    finally:
        storage.delete(name)
    blind = [n["NodeManagerAddress"] + " " + n["NodeID"][:8] for n, ok in zip(nodes, seen) if not ok]
    if blind:
        raise StorageUnreachable(
            f"storage {storage.describe()} is not visible from {len(blind)} of {len(nodes)} nodes "
            f"({', '.join(blind)}): "
            "on a cluster of more than one node use storage every node reaches — an NFS mount present on every "
            "node at the same path, or an object store (--storage s3://bucket/prefix?..., gs://...)"
        )
    return len(nodes)
