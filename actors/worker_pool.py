"""``WorkerPool`` (``cluster/fl/worker_pool.py``) over the client-worker actors: arguments go to
the object store once per call, the workers run in parallel, and only the answers that arrive
within ``timeout_s`` count. A worker that died or timed out is skipped (its clients are reported
as failed in training), so one lost worker never stalls the round."""

from __future__ import annotations

import time
from typing import Optional

import numpy as np
import ray
from ray.exceptions import ActorUnavailableError, RayActorError, RayTaskError

from cluster.fl.worker_pool import EvalParts, TrainOutcome, TrainTask
from cluster.storage import Storage

WORKER_FAILURES = (RayActorError, RayTaskError)


class ActorPool:
    def __init__(self, workers: list, timeout_s: float):
        self.workers = workers
        self.timeout_s = timeout_s

    def train(self, round_index: int, tasks: list[TrainTask], params: dict[str, np.ndarray]) -> TrainOutcome:
        params_ref = ray.put(params)
        pending = [(self.workers[t.worker].train.remote(round_index, t.clients, params_ref, t.real_time_sleep_s,
                                                        t.settings), t.clients) for t in tasks]
        ready, not_ready = ray.wait([ref for ref, _ in pending], num_returns=len(pending), timeout=self.timeout_s)
        for ref in not_ready:
            ray.cancel(ref)
        ready = set(ready)
        results, failed = [], []
        for ref, clients in pending:  # worker order, so uploads are summed in a fixed order
            if ref not in ready:
                failed.append(clients)
                continue
            try:
                results.append(ray.get(ref))
            except WORKER_FAILURES:
                failed.append(clients)
        return TrainOutcome(results, np.concatenate(failed) if failed else np.zeros(0, np.int64))

    def _each(self, method: str, *args) -> list:
        """``method(*args)`` on every worker: the answers of those that replied in time, in worker order."""
        refs = [ray.put(a) for a in args]
        pending = [getattr(worker, method).remote(*refs) for worker in self.workers]
        ready = set(ray.wait(pending, num_returns=len(pending), timeout=self.timeout_s)[0])
        answers = []
        for ref in pending:
            if ref not in ready:
                continue
            try:
                answers.append(ray.get(ref))
            except WORKER_FAILURES:
                continue
        return answers

    def evaluate(self, params, split, clusters) -> list[EvalParts]:
        return self._each("evaluate", params, split, clusters)

    def retrieval_queries(self, params, clusters) -> list[tuple[np.ndarray, np.ndarray]]:
        return self._each("retrieval_queries", params, clusters)

    def shift_subordinates(self, delegates, labels, mean_update, discount) -> None:
        self._each("shift_subordinates", delegates, labels, mean_update, discount)

    def cluster_sums(self, n_clusters, centroids, labels, params) -> list[tuple[np.ndarray, np.ndarray]]:
        return self._each("cluster_sums", n_clusters, centroids, labels, params)

    def assign_clusters(self, centroids, params) -> list[tuple[np.ndarray, np.ndarray]]:
        return self._each("assign_clusters", centroids, params)

    def save(self, folder: Storage, round_index: int) -> None:
        """Every worker must have saved before the checkpoint is committed: none is skipped. A
        worker that Ray is restarting (killed in this very round) is asked again once it is back,
        within ``timeout_s``; a checkpoint round must not fail the run for a worker that returns."""
        deadline = time.monotonic() + self.timeout_s
        waiting = list(range(len(self.workers)))
        while waiting:
            calls = [(index, self.workers[index].save.remote(folder, round_index)) for index in waiting]
            waiting = []
            for index, ref in calls:
                try:
                    ray.get(ref)
                except ActorUnavailableError:
                    if time.monotonic() > deadline:
                        raise
                    waiting.append(index)
            if waiting:
                time.sleep(0.5)

    def reset(self, folder: Optional[Storage]) -> None:
        ray.get([worker.reset.remote(folder) for worker in self.workers])
