"""Client-worker actor: many simulated phones of one tier, trained in batched tensor calls.

One Ray actor per simulated client would cost a process (~100 MB) per phone; a worker holds
thousands of clients and trains any subset of them in a single call instead.
"""

from __future__ import annotations

import time
import uuid
from typing import Any, Optional

import numpy as np

from actors.call_args import TrainCall
from cluster import checkpoint
from cluster.heap import keep_freed_heap
from cluster.fl.families.base import WorkerSetup
from cluster.fl.shard import ClientShard
from cluster.fl.worker_pool import WorkerRestarted
from cluster.storage import Storage


class ClientWorker:
    """Plain class; ``actors.factory`` applies ``ray.remote`` with resources from config.

    ``incarnation`` is new in every process: when Ray restarts the actor, its clients are back at
    the last checkpoint. Calls that read or change their state take ``expect``, the incarnation
    the pool last synchronised, and raise WorkerRestarted when it is not this one, so a restart
    never passes unnoticed as a silent roll-back of its clients."""

    def __init__(
        self,
        name: str,
        shards: Storage,
        setup: WorkerSetup,
        checkpoints: Optional[Storage] = None,
    ):
        import warnings

        import torch

        # N actors x all cores would oversubscribe the machine; one thread each.
        torch.set_num_threads(1)
        keep_freed_heap()
        # The global model arrives read-only (from the object store, or joined from a call's
        # chunks); it is only ever indexed (copied), never written, so torch's warning about
        # non-writable arrays is moot.
        warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
        self.name = name
        self.shards, self.setup = shards, setup
        self.checkpoints = checkpoints
        self.incarnation = uuid.uuid4().hex
        self.restored_round = self.reset(checkpoint.latest(checkpoints) if checkpoints is not None else None)

    def reset(self, folder: Optional[Storage]) -> Optional[int]:
        """Start again from the shard, then from the private vectors saved in checkpoint
        ``folder`` (None: from the start). The shard is read from the run's storage, not passed
        through the object store, so a worker restarted on any node finds its clients again."""
        self.core = self.setup.core(ClientShard.load(self.shards, f"{self.name}.npz"))
        if folder is None:
            return None
        workers = folder / "workers"
        names = workers.list()
        return self.core.restore(workers, names) if names else None

    def ready(self) -> dict:
        return {
            "name": self.name,
            "clients": self.core.n_clients,
            "restored_round": self.restored_round,
            "incarnation": self.incarnation,
        }

    def _check(self, expect: Optional[str]) -> None:
        if expect is not None and expect != self.incarnation:
            raise WorkerRestarted(self.name)

    def train(self, call: TrainCall, *model) -> Any:
        """The uploads of ``call.task``'s clients, trained from the global model that follows the
        call (``actors/call_args.py``); the task's ``settings``: what each trains with (width,
        compression, cluster), or None; its ``guard``: what the devices do to their uploads
        before they leave, or None (in the clear)."""
        self._check(call.expect)
        started = time.perf_counter()
        task = call.task
        result = self.core.upload(call.round_index, task.clients, call.params(model), task.settings, task.guard)
        if task.real_time_sleep_s > 0:
            # Demo mode: the round takes (scaled) as long as its slowest client here would.
            time.sleep(max(0.0, task.real_time_sleep_s - (time.perf_counter() - started)))
        return result

    def evaluate(self, params: dict[str, np.ndarray], split: str = "test", clusters=None, expect: Optional[str] = None):
        """``clusters``: Cali3F's ``ClusterView``, whose dense parts serve their members."""
        self._check(expect)
        return self.core.evaluate(params, split, clusters)

    def retrieval_queries(
        self, params: dict[str, np.ndarray], clusters=None, expect: Optional[str] = None
    ) -> tuple[np.ndarray, np.ndarray]:
        self._check(expect)
        return self.core.retrieval_queries(params, clusters)

    def device_step(self, step: str, *args, expect: Optional[str] = None):
        """The strategy's device step ``step`` on this worker's clients (``WorkerPool.device_step``)."""
        self._check(expect)
        return self.core.device_step(step, *args)

    def save(self, folder: Storage, round_index: int, expect: Optional[str] = None) -> None:
        """Write this worker's clients' private state into checkpoint ``folder``."""
        self._check(expect)
        self.core.save(folder / "workers", f"{self.name}.npz", round_index)

    def pid(self) -> int:
        import os

        return os.getpid()
