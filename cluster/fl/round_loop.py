"""The one round loop, for actors and in process alike: the server plans the round (selection,
over-selection, virtual clock), the pool trains each worker's kept clients, the model family
merges the uploads, the server aggregates and steps, the strategy runs its device steps, the
global model is evaluated on the cadence, and the round's record is kept. Checkpoints, when a
storage is given, hold the server state, the history and every worker's private state.

When workers fall out of sync (``WorkersOutOfSync``: Ray restarted one, whose clients are back at
the last checkpoint, or a call to one timed out and may have changed state whose answer was
dropped), the whole run goes back to the last checkpoint and replays up to where it was: the
rounds that follow are those of a run without the failure, bit for bit, and ``resyncs`` counts
how often it happened.

``actors/aggregator.py`` is a thin Ray shell around it; ``cluster/fl/inprocess.py`` runs it over
the cores in one process. The same config gives the same records either way, bit for bit."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Optional

import numpy as np

from cluster import checkpoint
from cluster.fl.async_events import AsyncEvents
from cluster.fl.async_step import async_step
from cluster.fl.records import RoundTiming, round_record
from cluster.fl.server_core import FederatedServer
from cluster.fl.worker_pool import EvalParts, TrainTask, WorkerPool, WorkersOutOfSync, in_client_order
from cluster.storage import Storage
from configs.schema import FLConfig

# Replays in a row before a call gives up: a worker that times out every time would loop forever.
RESYNC_ATTEMPTS = 3


class WorkersLost(RuntimeError):
    """Workers stayed out of sync after every replay allowed (each call timed out, or kept dying)."""


@dataclass(frozen=True)
class RoundSchedule:
    """``rounds`` in all; ``eval_every``: evaluate the global model every that many rounds and at
    the last one (None: only when asked); ``real_time_scale`` > 0: demo mode, each worker takes
    that share of its slowest client's simulated latency in wall time; a checkpoint every
    ``checkpoint_every`` rounds when the loop is given a storage."""

    rounds: int
    eval_every: Optional[int]
    real_time_scale: float = 0.0
    checkpoint_every: int = 1

    @classmethod
    def of(cls, cfg: FLConfig) -> RoundSchedule:
        return cls(cfg.rounds, cfg.eval_every, cfg.runtime.real_time_scale, cfg.checkpoint_every)


class RoundLoop:
    """``schedule``: how many rounds, and when to evaluate and checkpoint; ``checkpoints``: where
    (None: never, and a worker falling out of sync ends the run)."""

    def __init__(
        self,
        server: FederatedServer,
        pool: WorkerPool,
        worker_of_user: np.ndarray,
        schedule: RoundSchedule,
        checkpoints: Optional[Storage] = None,
    ):
        self.server = server
        self.pool = pool
        self.worker_of_user = worker_of_user
        self.rounds = schedule.rounds
        self.eval_every = schedule.eval_every
        self.real_time_scale = schedule.real_time_scale
        self.checkpoints = checkpoints
        self.checkpoint_every = schedule.checkpoint_every
        self.history: list[dict] = []
        self._last_test: Optional[EvalParts] = None
        self.resyncs = 0
        self.events = self._fresh_events()
        # Where a replay starts when there is no checkpoint yet.
        self._initial_state = server.state_dict() if checkpoints is not None else None

    @property
    def round_index(self) -> int:
        return self.server.round_index

    def _fresh_events(self) -> Optional[AsyncEvents]:
        """Asynchronous mode's devices in flight (none yet); None in synchronous mode."""
        mode = self.server.cfg.mode
        if mode.kind != "async":
            return None
        concurrency = mode.concurrency or self.server.cfg.clients_per_round
        return AsyncEvents(
            concurrency,
            mode.buffer_size or max(1, concurrency // 10),
            mode.staleness_exponent,
            mode.tier_staleness,
            self.server.fleet.tiers.n_tiers,
        )

    def run_round(self) -> dict:
        """The record of the round after the ones done; a replay after workers fell out of sync
        is invisible here but for ``resyncs``."""
        return self._in_sync(self._round)

    def _in_sync(self, action):
        """``action()`` once every worker holds the state of the rounds done so far."""
        target = self.server.round_index
        for attempt in range(RESYNC_ATTEMPTS + 1):
            try:
                while self.server.round_index < target:
                    self._round()
                return action()
            except WorkersOutOfSync as lost:
                if self.checkpoints is None or attempt == RESYNC_ATTEMPTS:
                    raise WorkersLost(
                        f"{lost}; the run went back to its last checkpoint {attempt} time(s) in a row "
                        "and they are still out of sync (a call that keeps timing out needs a longer "
                        "fl.runtime.round_timeout_s)"
                    ) from lost
                self.resyncs += 1
                self.restore()
        raise AssertionError("unreachable")

    def _round(self) -> dict:
        if self.events is not None:
            return async_step(self, self.events)
        server, ops, fleet = self.server, self.server.ops, self.server.fleet
        started = time.perf_counter()
        plan = server.plan_round()
        planned = time.perf_counter()
        guard = server.upload_guard(plan)
        tasks = self.train_tasks(plan, guard)
        secure_sum = server.secure_sum(guard)
        if secure_sum is None:
            outcome = self.pool.train(plan.round_index, tasks, server.params)
            trained = time.perf_counter()
            merged = ops.merge(outcome.results)
        else:
            outcome = self.pool.train(plan.round_index, tasks, server.params, fold=secure_sum.add)
            trained = time.perf_counter()
            merged = secure_sum.finish(server.params, server.cfg.clients_per_round)
        extra = server.apply(plan, merged)
        extra.update(server.after_round(self.pool))
        aggregated = time.perf_counter()
        evaluation = self._evaluate("test") if self._evaluates_now() else None
        wall_s = time.perf_counter() - started
        record = round_record(
            plan,
            merged,
            outcome.failed,
            fleet,
            RoundTiming(server.sim_time_s, wall_s),
            evaluation,
            server.upload_stats(merged),
        )
        record.update(extra)
        return self._close_round(record, (started, planned, trained, aggregated), wall_s)

    def _close_round(self, record: dict, stamps: tuple[float, float, float, float], wall_s: float) -> dict:
        """Keep the round's record with its wall-time split, and checkpoint on the cadence."""
        started, planned, trained, aggregated = stamps
        record.update(
            plan_s=planned - started,
            train_s=trained - planned,
            aggregate_s=aggregated - trained,
            eval_s=started + wall_s - aggregated,
        )
        self.history.append(record)
        if self.checkpoints is not None and self.server.round_index % self.checkpoint_every == 0:
            self._checkpoint()
        return record

    def train_tasks(self, plan, guard=None) -> list[TrainTask]:
        """Each worker's share of the planned round: its kept clients, their settings, its demo
        sleep, and what its devices do to their uploads (``guard``)."""
        return self._worker_tasks(plan.kept_clients, lambda clients: self._real_time_sleep(plan, clients), guard)

    def _worker_tasks(self, kept: np.ndarray, sleep_of, guard=None) -> list[TrainTask]:
        """``kept`` split by the worker that holds them, each part with its settings and sleep."""
        tasks = []
        for worker in np.unique(self.worker_of_user[kept]):
            clients = np.sort(kept[self.worker_of_user[kept] == worker])
            tasks.append(
                TrainTask(int(worker), clients, self.server.client_settings(clients), sleep_of(clients), guard)
            )
        return tasks

    def _real_time_sleep(self, plan, clients: np.ndarray) -> float:
        if self.real_time_scale <= 0:
            return 0.0
        latency = plan.latency_s[np.isin(plan.selected, clients)]
        return float(latency.max()) * self.real_time_scale if len(latency) else 0.0

    def _evaluates_now(self) -> bool:
        if not self.eval_every:
            return False
        done = self.server.round_index
        return done % self.eval_every == 0 or done == self.rounds

    def evaluate(self, split: str = "test") -> dict[str, float]:
        """The served models (global, or each client's cluster's or personal dense part) on every
        worker's ``split`` rows, summarized overall and per tier."""
        return self._in_sync(lambda: self._evaluate(split))

    def _evaluate(self, split: str) -> dict[str, float]:
        server = self.server
        parts = in_client_order(self.pool.evaluate(server.params, split, server.cluster_view()))
        if split == "test":
            self._last_test = parts
        return server.ops.summarize(*parts, server.fleet.tier_of_user, server.fleet.tiers.names, split)

    def retrieval_queries(self) -> list[tuple[np.ndarray, np.ndarray]]:
        """Each worker's (clients, query vectors), as the served models give them."""
        return self._in_sync(lambda: self.pool.retrieval_queries(self.server.params, self.server.cluster_view()))

    def last_client_metrics(self) -> EvalParts:
        """Per client, in id order, the last test evaluation; evaluates now if there was none
        (e.g. a resumed run whose rounds were all done)."""
        if self._last_test is None:
            self.evaluate()
        assert self._last_test is not None  # a test evaluation keeps its parts
        return self._last_test

    def checkpoint(self) -> Storage:
        """Workers save their clients' private state, then the server state, then ``latest.json``
        names the round: it never names one whose files are incomplete."""
        return self._in_sync(self._checkpoint)

    def _checkpoint(self) -> Storage:
        assert self.checkpoints is not None
        round_index = self.server.round_index
        folder = checkpoint.round_folder(self.checkpoints, round_index)
        self.pool.save(folder, round_index)
        state = {"server": self.server.state_dict(), "history": self.history}
        if self.events is not None:
            state["async"] = self.events.state_dict()
        checkpoint.write_state(folder, "aggregator", "aggregator", state)
        checkpoint.commit(self.checkpoints, round_index)
        return folder

    def restore(self) -> int:
        """Continue from the last checkpoint (or from the start when there is none yet), every
        worker set back to it; returns the number of rounds already done."""
        assert self.checkpoints is not None
        folder = checkpoint.latest(self.checkpoints)
        if folder is not None:
            state = checkpoint.read_state(folder, "aggregator", "aggregator")
            self.server.load_state_dict(state["server"])
            self.history = list(state["history"])
            if self.events is not None:
                self.events.load_state_dict(state.get("async"))
        elif self._initial_state is not None and self.server.round_index > 0:
            self.server.load_state_dict(self._initial_state)
            self.history = []
            self.events = self._fresh_events()
        self.pool.reset(folder)
        return self.server.round_index
