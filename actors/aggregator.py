"""Aggregator actor: a Ray shell around the one round loop (``cluster/fl/round_loop.py``) over
the client-worker actors (``actors/worker_pool.py``). It adds what only an actor has: the
dashboard's metrics and, when Ray restarts it after a crash, the return to its last checkpoint."""

from __future__ import annotations

from typing import Optional

import numpy as np
import ray

from actors.round_metrics import RoundMetrics
from actors.worker_pool import RayWorkerPool
from cluster.checkpoint import read_state
from cluster.heap import keep_freed_heap
from cluster.fl.round_loop import RoundLoop, RoundSchedule
from cluster.fl.server_core import ServerSetup
from cluster.storage import Storage


# w⁰ as the driver drew it, in the checkpoint folder (``actors.factory.start_aggregator``).
INITIAL_STATE = "initial"


def _restarted() -> bool:
    import warnings

    with warnings.catch_warnings():  # Ray 2.60 warns about its own use of a deprecated id accessor here
        warnings.simplefilter("ignore", DeprecationWarning)
        return ray.get_runtime_context().was_current_actor_reconstructed


class Aggregator:
    """Plain class; ``actors.factory`` applies ``ray.remote``."""

    def __init__(
        self,
        setup: ServerSetup,
        worker_names: list[str],
        checkpoints: Optional[Storage] = None,
        run_name: str = "run",
        initial_params: Optional[dict[str, np.ndarray]] = None,
    ):
        # Every round merges the uploads into fresh arrays of the same sizes.
        keep_freed_heap()
        if initial_params is None and checkpoints is not None:
            initial_params = read_state(checkpoints, INITIAL_STATE, "initial_params")
        # The workers come by name, not as handles: handles among a restartable actor's
        # constructor arguments travel through the object store, which Ray warns breaks restarts.
        workers = [ray.get_actor(name) for name in worker_names]
        cfg = setup.cfg
        self.loop = RoundLoop(
            setup.server(initial_params),
            RayWorkerPool(workers, cfg.runtime.round_timeout_s),
            setup.worker_of_user,
            RoundSchedule.of(cfg),
            checkpoints,
        )
        self.metrics = RoundMetrics(run_name, setup.fleet.tiers.names, setup.ops.metric_names)
        if checkpoints is not None and _restarted():
            # Ray restarted this actor after it died: continue from the last checkpoint, with
            # every worker set back to it, so the rounds that follow are the ones a run without
            # the crash would have had.
            self.loop.restore()

    def ready(self) -> int:
        return self.loop.round_index

    def run_round(self) -> dict:
        record = self.loop.run_round()
        self.metrics.export(record)
        return record

    def evaluate(self, split: str = "test") -> dict[str, float]:
        return self.loop.evaluate(split)

    def last_client_metrics(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        return self.loop.last_client_metrics()

    def checkpoint(self) -> str:
        return str(self.loop.checkpoint())

    def restore(self) -> int:
        return self.loop.restore()

    def global_params(self) -> dict[str, np.ndarray]:
        return self.loop.server.params

    def cluster_view(self):
        return self.loop.server.cluster_view()

    def history_rows(self) -> list[dict]:
        return self.loop.history

    def retrieval_queries(self) -> list[tuple[np.ndarray, np.ndarray]]:
        return self.loop.retrieval_queries()

    def resyncs(self) -> int:
        """How often workers fell out of sync and the run went back to its last checkpoint."""
        return self.loop.resyncs
