"""What the round loop asks of the client workers, as one typed contract with two
implementations: ``CorePool`` here (the worker cores in this process) and ``actors.worker_pool.
RayWorkerPool`` (the same cores inside Ray actors). The loop never knows which one it drives.

Every answer comes back in worker order, so sums over workers are added in a fixed order and a
run's results do not depend on which implementation ran it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Optional, Protocol

import numpy as np

from cluster.storage import Storage

EvalParts = tuple[np.ndarray, np.ndarray, np.ndarray]


@dataclass(frozen=True)
class TrainTask:
    """One worker's share of a round: its kept ``clients`` (sorted), what they train with (the
    model family's and strategy's per-client settings, or None), in demo mode how long the
    worker should take in wall time (its slowest client's simulated latency, scaled), and what the
    devices do to their uploads before they leave (``guard``: mask them for secure aggregation,
    noise them for local DP; None: uploads in the clear)."""

    worker: int
    clients: np.ndarray
    settings: Any = None
    real_time_sleep_s: float = 0.0
    guard: Any = None


class WorkersOutOfSync(Exception):
    """Workers whose clients' device state is no longer the state the round loop last saw: Ray
    restarted them (their state is the last checkpoint's, not the current round's), or a call to
    them timed out (a cancelled actor call still runs, and may have advanced state whose answer
    was dropped). The loop takes the whole run back to its last checkpoint and replays from there."""

    def __init__(self, workers: list[int], why: str):
        super().__init__(f"workers {workers}: {why}")
        self.workers = workers
        self.why = why


class WorkerRestarted(Exception):
    """Raised inside a worker asked for the state of a process it no longer is (Ray restarted it)."""

    def __init__(self, name: str = ""):
        super().__init__(f"{name} was restarted: its clients' state is its last checkpoint's")
        self.name = name


@dataclass(frozen=True)
class TrainOutcome:
    """The uploads of the workers that answered (worker order) and the clients of those that did
    not (died for good): counted per tier, never silently lost."""

    results: list
    failed: np.ndarray


Fold = Optional[Callable[[Any], Any]]


class WorkerPool(Protocol):
    def train(
        self, round_index: int, tasks: list[TrainTask], params: dict[str, np.ndarray], fold: Fold = None
    ) -> TrainOutcome:
        """Each task's uploads; ``fold``, when given, takes each worker's upload as it is fetched
        and what it returns is kept instead (a secure sum adds the masked uploads and keeps
        their ids), so no one process holds every upload of the round."""

    def evaluate(self, params: dict[str, np.ndarray], split: str, clusters) -> list[EvalParts]: ...

    def retrieval_queries(self, params: dict[str, np.ndarray], clusters) -> list[tuple[np.ndarray, np.ndarray]]: ...

    def device_step(self, step: str, *args: Any) -> list:
        """The strategy's device step ``step`` (a method of its ``DeviceHalf``) on every worker's
        clients: the answers of the workers still alive, in worker order."""

    # Checkpoints: each worker saves its clients' private state; reset reloads it (None: from the start).
    def save(self, folder: Storage, round_index: int) -> None: ...

    def reset(self, folder: Optional[Storage]) -> None: ...


def no_failures() -> np.ndarray:
    return np.zeros(0, np.int64)


def in_client_order(parts: list[EvalParts]) -> EvalParts:
    """Per-worker evaluation answers as one set of rows ordered by client (stable, so a client's
    own rows keep their order): what the model family's summary expects."""
    if not parts:
        return np.zeros(0, np.int64), np.zeros(0), np.zeros(0)
    owners = np.concatenate([p[0] for p in parts])
    order = np.argsort(owners, kind="stable")
    return owners[order], np.concatenate([p[1] for p in parts])[order], np.concatenate([p[2] for p in parts])[order]


class CorePool:
    """The worker cores in this process, called one after another. ``names`` name each core's
    checkpoint file, as the actors' names do. Demo-mode sleeps are not taken: in process, a
    round runs as fast as it can."""

    def __init__(self, cores: list, names: Optional[list[str]] = None):
        self.cores = cores
        self.names = names or [f"worker-{i}" for i in range(len(cores))]

    def train(
        self, round_index: int, tasks: list[TrainTask], params: dict[str, np.ndarray], fold: Fold = None
    ) -> TrainOutcome:
        results = []
        for t in tasks:
            upload = self.cores[t.worker].upload(round_index, t.clients, params, t.settings, t.guard)
            results.append(fold(upload) if fold is not None else upload)
        return TrainOutcome(results, no_failures())

    def evaluate(self, params, split, clusters) -> list[EvalParts]:
        return [core.evaluate(params, split, clusters) for core in self.cores]

    def retrieval_queries(self, params, clusters) -> list[tuple[np.ndarray, np.ndarray]]:
        return [core.retrieval_queries(params, clusters) for core in self.cores]

    def device_step(self, step: str, *args: Any) -> list:
        return [core.device_step(step, *args) for core in self.cores]

    def save(self, folder: Storage, round_index: int) -> None:
        for core, name in zip(self.cores, self.names):
            core.save(folder / "workers", f"{name}.npz", round_index)

    def reset(self, folder: Optional[Storage]) -> None:
        """Each core starts again from its shard, then from the private state in ``folder``."""
        self.cores = [core.fresh() for core in self.cores]
        if folder is None:
            return
        names = (folder / "workers").list()
        for core in self.cores if names else []:
            core.restore(folder / "workers", names)
