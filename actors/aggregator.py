"""Aggregator actor: runs rounds over the client-worker actors.

selection → broadcast (one object-store copy of the global model) → collection with a wall-clock
deadline → dropping → FedAvg + server step → evaluation → metrics → checkpoint. Every decision
is made by the pure ``FederatedServer``; this class only moves data and handles failures.
"""

from __future__ import annotations

import time
from typing import Optional

import numpy as np
import ray
from ray.exceptions import RayActorError, RayTaskError

from actors.round_metrics import RoundMetrics
from cluster import checkpoint
from cluster.fl.model_ops import ModelOps
from cluster.fl.records import round_record
from cluster.fl.server_core import FederatedServer, FleetView
from cluster.storage import Storage
from configs.schema import FLConfig

_WORKER_FAILURES = (RayActorError, RayTaskError)


class ActorPool:
    """``WorkerPool`` over the worker actors: one object-store copy of the arguments, the
    answers of the workers that replied within ``timeout_s`` (a dead one is skipped)."""

    def __init__(self, workers: list, timeout_s: float):
        self.workers = workers
        self.timeout_s = timeout_s

    def broadcast(self, method: str, *args) -> list:
        refs = [ray.put(a) for a in args]
        pending = [getattr(worker, method).remote(*refs) for worker in self.workers]
        ready, _ = ray.wait(pending, num_returns=len(pending), timeout=self.timeout_s)
        answers = []
        for ref in pending:  # worker order, so sums are added in a fixed order
            if ref not in ready:
                continue
            try:
                answers.append(ray.get(ref))
            except _WORKER_FAILURES:
                continue
        return answers


def _restarted() -> bool:
    import warnings

    with warnings.catch_warnings():  # Ray 2.60 warns about its own use of a deprecated id accessor here
        warnings.simplefilter("ignore", DeprecationWarning)
        return ray.get_runtime_context().was_current_actor_reconstructed


class Aggregator:
    """Plain class; ``actors.factory`` applies ``ray.remote``."""

    def __init__(self, cfg: FLConfig, ops: ModelOps, fleet: FleetView, seed: int, workers: list,
                 worker_of_user: np.ndarray, checkpoints: Optional[Storage] = None, run_name: str = "run"):
        self.cfg = cfg
        self.server = FederatedServer(cfg, ops, fleet, seed)
        self.ops = ops
        self.fleet = fleet
        self.workers = workers
        self.worker_of_user = worker_of_user
        self.checkpoints = checkpoints
        self.history: list[dict] = []
        self.metrics = RoundMetrics(run_name, fleet.tiers.names)
        if checkpoints is not None and _restarted():
            # Ray restarted this actor after it died: continue from the last checkpoint, with
            # every worker set back to it, so the rounds that follow are the ones a run without
            # the crash would have had.
            self.restore()

    def ready(self) -> int:
        return self.server.round_index

    # ------------------------------------------------------------------ one round
    def run_round(self) -> dict:
        started = time.perf_counter()
        plan = self.server.plan_round()
        kept = plan.kept_clients
        planned = time.perf_counter()
        params_ref = ray.put(self.server.params)
        pending = {}
        for worker in np.unique(self.worker_of_user[kept]):
            clients = np.sort(kept[self.worker_of_user[kept] == worker])
            sleep_s = self._real_time_sleep(plan, clients)
            settings = self.server.client_settings(clients)
            ref = self.workers[worker].train.remote(plan.round_index, clients, params_ref, sleep_s, settings)
            pending[ref] = clients
        results, failed = self._collect(pending)
        trained = time.perf_counter()
        merged = self.ops.merge(results)
        fairness = self.server.apply(plan, merged)
        fairness.update(self.server.after_round(ActorPool(self.workers, self.cfg.round_timeout_s)))
        aggregated = time.perf_counter()
        evaluation = None
        if self.server.round_index % self.cfg.eval_every == 0 or self.server.round_index == self.cfg.rounds:
            evaluation = self.evaluate()
        wall_s = time.perf_counter() - started
        record = round_record(plan, merged, failed, self.fleet.tier_of_user, self.fleet.tiers.names,
                              self.server.sim_time_s, wall_s, evaluation, self.ops.upload_stats(merged))
        record.update(fairness)
        record.update(plan_s=planned - started, train_s=trained - planned, aggregate_s=aggregated - trained,
                      eval_s=started + wall_s - aggregated)
        self.history.append(record)
        self.metrics.export(record)
        if self.checkpoints is not None and self.server.round_index % self.cfg.checkpoint_every == 0:
            self.checkpoint()
        return record

    def _real_time_sleep(self, plan, clients: np.ndarray) -> float:
        if self.cfg.real_time_scale <= 0:
            return 0.0
        latency = plan.latency_s[np.isin(plan.selected, clients)]
        return float(latency.max()) * self.cfg.real_time_scale if len(latency) else 0.0

    def _collect(self, pending: dict) -> tuple[list, np.ndarray]:
        """Results of the workers that answered before the deadline; the clients of a worker
        that died or timed out are returned as failed (counted per tier, never lost)."""
        ready, not_ready = ray.wait(list(pending), num_returns=len(pending), timeout=self.cfg.round_timeout_s)
        results, failed = [], [pending[ref] for ref in not_ready]
        for ref in not_ready:
            ray.cancel(ref)
        for ref in ready:
            try:
                results.append(ray.get(ref))
            except _WORKER_FAILURES:
                failed.append(pending[ref])
        return results, (np.concatenate(failed) if failed else np.zeros(0, np.int64))

    # ------------------------------------------------------------------ evaluation
    def evaluate(self, split: str = "test") -> dict[str, float]:
        """The global model on every worker's ``split`` rows (click models: 'test' or 'train';
        NCF: leave-one-out), summarized overall and per tier."""
        params_ref = ray.put(self.server.params)
        clusters_ref = ray.put(self.server.cluster_view())
        refs = [worker.evaluate.remote(params_ref, split, clusters_ref) for worker in self.workers]
        ready, _ = ray.wait(refs, num_returns=len(refs), timeout=self.cfg.round_timeout_s)
        clients, hits, ndcgs = [], [], []
        for ref in ready:
            try:
                c, h, n = ray.get(ref)
            except _WORKER_FAILURES:
                continue
            clients.append(c)
            hits.append(h)
            ndcgs.append(n)
        clients_all = np.concatenate(clients) if clients else np.zeros(0, np.int64)
        order = np.argsort(clients_all, kind="stable")
        parts = (clients_all[order], np.concatenate(hits)[order] if hits else np.zeros(0),
                 np.concatenate(ndcgs)[order] if ndcgs else np.zeros(0))
        if split == "test":
            self._last_eval = parts
        return self.ops.summarize(*parts, self.fleet.tier_of_user, self.fleet.tiers.names, split)

    def last_client_metrics(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(clients, HR@10, NDCG@10) of the last evaluation; evaluates now if there was none
        (e.g. a resumed run whose rounds were all done)."""
        if not hasattr(self, "_last_eval"):
            self.evaluate()
        return self._last_eval

    # ------------------------------------------------------------------ checkpoints
    def checkpoint(self) -> str:
        """Workers save their clients' private vectors, then the server state, then
        ``latest.json`` names the round: it never names one whose files are incomplete."""
        assert self.checkpoints is not None
        round_index = self.server.round_index
        folder = checkpoint.round_folder(self.checkpoints, round_index)
        ray.get([worker.save.remote(folder, round_index) for worker in self.workers])
        checkpoint.write_state(folder, "aggregator", "aggregator",
                               {"server": self.server.state_dict(), "history": self.history})
        checkpoint.commit(self.checkpoints, round_index)
        return str(folder)

    def restore(self) -> int:
        """Continue from the last checkpoint (or from the start when there is none yet), every
        worker set back to it; returns the number of rounds already done."""
        assert self.checkpoints is not None
        folder = checkpoint.latest(self.checkpoints)
        if folder is not None:
            state = checkpoint.read_state(folder, "aggregator", "aggregator")
            self.server.load_state_dict(state["server"])
            self.history = list(state["history"])
        ray.get([worker.reset.remote(folder) for worker in self.workers])
        return self.server.round_index

    def global_params(self) -> dict[str, np.ndarray]:
        return self.server.params

    def cluster_view(self):
        return self.server.cluster_view()

    def history_rows(self) -> list[dict]:
        return self.history
