"""Client-worker actor: many simulated phones of one tier, trained in batched tensor calls.

One Ray actor per simulated client would cost a process (~100 MB) per phone; a worker holds
thousands of clients and trains any subset of them in a single call instead.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Optional

import numpy as np

from cluster.fl.click_shard import ClickShard
from cluster.fl.click_training import ClickRecipe
from cluster.fl.click_worker_core import ClickWorkerCore
from cluster.fl.local_training import LocalRecipe
from cluster.fl.worker_core import ClientShard, ClientWorkerCore
from cluster.models.click import ClickSpec
from cluster.models.ncf import NCFSpec


class ClientWorker:
    """Plain class; ``actors.factory`` applies ``ray.remote`` with resources from config."""

    def __init__(self, name: str, shard_path: str, spec: NCFSpec | ClickSpec, recipe: LocalRecipe | ClickRecipe,
                 seed: int, checkpoint_dir: Optional[str] = None):
        import warnings

        import torch

        # N actors x all cores would oversubscribe the machine; one thread each.
        torch.set_num_threads(1)
        # The global model arrives read-only from the object store; it is only ever indexed
        # (copied), never written, so torch's warning about non-writable arrays is moot.
        warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
        self.name = name
        # Loaded from disk rather than passed through the object store, so a restart after a
        # crash finds its clients again whatever happened to the driver's references.
        if isinstance(spec, ClickSpec):
            self.core = ClickWorkerCore(ClickShard.load(Path(shard_path)), spec, recipe, seed)
        else:
            self.core = ClientWorkerCore(ClientShard.load(Path(shard_path)), spec, recipe, seed)
        self.checkpoint_dir = Path(checkpoint_dir) if checkpoint_dir else None
        self.restored_round = self._restore()

    def _restore(self) -> Optional[int]:
        """After a restart (or on --resume), reload the clients' private vectors from the files
        the workers saved at the last checkpoint."""
        if self.checkpoint_dir is None:
            return None
        files = sorted((self.checkpoint_dir / "workers").glob("*.npz"))
        return self.core.restore(files) if files else None

    def ready(self) -> dict:
        return {"name": self.name, "clients": self.core.n_clients, "restored_round": self.restored_round}

    def train(self, round_index: int, clients: np.ndarray, params: dict[str, np.ndarray],
              real_time_sleep_s: float = 0.0, settings=None):
        """The clients' uploads; ``settings`` (click models): each client's width and compression."""
        started = time.perf_counter()
        if settings is None:
            result = self.core.train(round_index, clients, params)
        else:
            result = self.core.train(round_index, clients, params, settings)
        if real_time_sleep_s > 0:
            # Demo mode: the round takes (scaled) as long as its slowest client here would.
            time.sleep(max(0.0, real_time_sleep_s - (time.perf_counter() - started)))
        return result

    def evaluate(self, params: dict[str, np.ndarray], split: str = "test", clusters=None):
        """``clusters``: Cali3F's ``ClusterView``, whose dense parts serve their members."""
        if isinstance(self.core, ClickWorkerCore):
            return self.core.evaluate(params, split)
        if split != "test":
            raise ValueError(f"NCF models evaluate leave-one-out only, not split {split!r}")
        return self.core.evaluate(params, clusters=clusters)

    def retrieval_queries(self, params: dict[str, np.ndarray], clusters=None) -> tuple[np.ndarray, np.ndarray]:
        return self.core.retrieval_queries(params, clusters)

    # Cali3F's device halves (eq. 4, federated re-clustering): see ClientWorkerCore.
    def shift_subordinates(self, delegates, labels, mean_update, discount) -> None:
        self.core.shift_subordinates(delegates, labels, mean_update, discount)

    def cluster_sums(self, n_clusters, centroids=None, labels=None):
        return self.core.cluster_sums(n_clusters, centroids, labels)

    def assign_clusters(self, centroids):
        return self.core.assign_clusters(centroids)

    def save(self, round_index: int) -> str:
        assert self.checkpoint_dir is not None, "save needs a checkpoint folder"
        path = self.checkpoint_dir / "workers" / f"{self.name}.npz"
        self.core.save(path, round_index)
        return str(path)

    def pid(self) -> int:
        import os

        return os.getpid()
