"""``WorkerPool`` (``cluster/fl/worker_pool.py``) over the client-worker actors: one call per
worker and round carries its share of the round and the global model (``actors/call_args.py``),
the workers run in parallel, and only the answers that arrive within ``timeout_s`` count.

A worker that died for good (Ray's restarts spent) is skipped: its clients are reported as
failed in training, so one lost worker never stalls the run. A worker that Ray restarted, or
whose call timed out, raises ``WorkersOutOfSync``: its clients' state is no longer the run's,
and the round loop takes the run back to its last checkpoint (``RoundLoop``)."""

from __future__ import annotations

import time
from typing import Optional

import numpy as np
import ray
from ray.exceptions import ActorUnavailableError, RayActorError, RayTaskError

from actors.call_args import TrainCall, model_args, shared
from cluster.fl.worker_pool import EvalParts, Fold, TrainOutcome, TrainTask, WorkerRestarted, WorkersOutOfSync
from cluster.storage import Storage

WORKER_FAILURES = (RayActorError, RayTaskError)


class RayWorkerPool:
    def __init__(self, workers: list, timeout_s: float):
        self.workers = workers
        self.timeout_s = timeout_s
        # Each worker's process as the loop last synchronised it; learned on first use.
        self.incarnations: Optional[list[str]] = None

    def _expect(self, index: int) -> Optional[str]:
        incarnations = self.incarnations if self.incarnations is not None else self._learn_incarnations()
        return incarnations[index]

    def _learn_incarnations(self) -> list[str]:
        self.incarnations = [r["incarnation"] for r in ray.get([w.ready.remote() for w in self.workers])]
        return self.incarnations

    def train(
        self, round_index: int, tasks: list[TrainTask], params: dict[str, np.ndarray], fold: Fold = None
    ) -> TrainOutcome:
        layout, model = model_args(params)
        pending = [
            (self.workers[t.worker].train.remote(TrainCall(round_index, t, self._expect(t.worker), layout), *model), t)
            for t in tasks
        ]
        ready, not_ready = ray.wait([ref for ref, _ in pending], num_returns=len(pending), timeout=self.timeout_s)
        for ref in not_ready:
            ray.cancel(ref)
        arrived = set(ready)
        results, failed, out_of_sync = [], [], [t.worker for ref, t in pending if ref not in arrived]
        for ref, task in pending:  # worker order, so uploads are summed in a fixed order
            if ref not in arrived:
                continue
            try:
                upload = ray.get(ref)
            except WorkerRestarted:
                out_of_sync.append(task.worker)
                continue
            except WORKER_FAILURES:
                failed.append(task.clients)
                continue
            results.append(fold(upload) if fold is not None else upload)
            del upload  # folded: the next worker's upload is fetched only now
        if out_of_sync:
            raise WorkersOutOfSync(sorted(out_of_sync), "restarted, or timed out mid-round")
        return TrainOutcome(results, np.concatenate(failed) if failed else np.zeros(0, np.int64))

    def _each(self, method: str, *args) -> list:
        """``method(*args)`` on every worker: the answers of those still alive, in worker order."""
        args = tuple(shared(a) for a in args)
        pending = [
            getattr(worker, method).remote(*args, expect=self._expect(index))
            for index, worker in enumerate(self.workers)
        ]
        ready = set(ray.wait(pending, num_returns=len(pending), timeout=self.timeout_s)[0])
        answers, out_of_sync = [], [index for index, ref in enumerate(pending) if ref not in ready]
        for index, ref in enumerate(pending):
            if ref not in ready:
                ray.cancel(ref)
                continue
            try:
                answers.append(ray.get(ref))
            except WorkerRestarted:
                out_of_sync.append(index)
            except WORKER_FAILURES:
                continue
        if out_of_sync:
            raise WorkersOutOfSync(sorted(out_of_sync), f"restarted, or timed out in {method}")
        return answers

    def evaluate(self, params, split, clusters) -> list[EvalParts]:
        return self._each("evaluate", params, split, clusters)

    def retrieval_queries(self, params, clusters) -> list[tuple[np.ndarray, np.ndarray]]:
        return self._each("retrieval_queries", params, clusters)

    def device_step(self, step: str, *args) -> list:
        return self._each("device_step", step, *args)

    def save(self, folder: Storage, round_index: int) -> None:
        """Every worker must have saved before the checkpoint is committed: none is skipped. A
        worker that Ray is restarting is waited for within ``timeout_s``, and then refuses (its
        state is an older checkpoint's), so the loop goes back to that checkpoint instead of
        committing a rolled-back worker into this one."""
        deadline = time.monotonic() + self.timeout_s
        waiting = list(range(len(self.workers)))
        while waiting:
            calls = [
                (index, self.workers[index].save.remote(folder, round_index, self._expect(index))) for index in waiting
            ]
            waiting, out_of_sync = [], []
            for index, ref in calls:
                try:
                    ray.get(ref)
                except ActorUnavailableError:
                    if time.monotonic() > deadline:
                        raise
                    waiting.append(index)
                except WorkerRestarted:
                    out_of_sync.append(index)
            if out_of_sync:
                raise WorkersOutOfSync(out_of_sync, "restarted before the checkpoint")
            if waiting:
                time.sleep(0.5)

    def reset(self, folder: Optional[Storage]) -> None:
        """Every worker back to checkpoint ``folder`` (None: the start); from here on the pool
        expects the processes that did it. A call still running on a worker (one that timed out)
        finishes first, since an actor runs its calls in order, so it cannot undo the reset."""
        ray.get([worker.reset.remote(folder) for worker in self.workers])
        self._learn_incarnations()
