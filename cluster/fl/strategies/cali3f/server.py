"""Cali3F (Zhu et al. 2022, Algorithm 1) as a strategy: it holds the clusters and their dense
parts, picks each round's delegates (ClusSamp), applies CaliUp and FastAgg to what they upload,
has the subordinates' devices apply eq. 4, re-clusters every k rounds, and serves each client
its cluster's dense part.

The maths is in ``maths.py`` and ``clustering.py``; this class only keeps state and asks the
workers for the device steps of ``device.py`` through ``WorkerPool.device_step`` (actors or
in-process cores alike).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Optional

import numpy as np

from cluster.fl.strategies.cali3f.maths import (
    COMPUTE_MULTIPLIER,
    cali_update,
    cluster_gradients,
    cluster_mean_update,
    init_cluster_models,
    pseudo_gradient,
)
from cluster.fl.strategies.cali3f.clustering import (
    FIXED_POINT_SCALE,
    ClusterSampler,
    clus_avg,
    cluster_metadata,
    encode_metadata,
    update_centroids,
)
from cluster.fl.strategies.base import ExtraPayload, StrategyContext
from cluster.fl.worker_pool import WorkerPool
from cluster.rng import stream
from cluster.fl.types import ClusterView, ClientUpdate, ClientSettings
from configs import ConfigError
from configs.schema import Cali3FConfig


class Cali3F:
    """The clusters start as K-means on the fleet's ``metadata`` (n_users, f); the context's
    ``eligible`` (n,) clients may be delegates, the fleet's ``train_samples`` (n,) weigh ClusAvg,
    and every cluster model starts at w⁰'s dense part."""

    compute_multiplier = COMPUTE_MULTIPLIER

    def __init__(self, cfg: Cali3FConfig, context: StrategyContext):
        fleet = context.fleet
        if fleet.metadata is None:
            raise ValueError("Cali3F needs the clients' metadata to form its first clusters (FleetView.metadata)")
        self.cfg = cfg
        self.ops = context.ops
        self.spec = context.ops.spec
        self.n_clusters = cfg.n_clusters
        self.train_samples = np.asarray(fleet.train_samples, dtype=np.float64)
        self.client_lr = context.client_lr
        self.cluster_lr = cfg.cluster_lr if cfg.cluster_lr is not None else context.client_lr
        labels = cluster_metadata(fleet.metadata, cfg.n_clusters, context.seed)
        self.sampler = ClusterSampler(
            labels, cfg.n_clusters, context.eligible, stream(context.seed, "cali3f-delegates")
        )
        self.models = init_cluster_models(context.dense_part(), cfg.n_clusters)
        self.centroids: Optional[np.ndarray] = None
        self._pending: Optional[tuple[np.ndarray, dict[str, np.ndarray]]] = None

    @property
    def labels(self) -> np.ndarray:
        return self.sampler.labels

    def select(self, k: int) -> np.ndarray:
        """About k delegates, k/P per cluster round-robin (ascending ids)."""
        return self.sampler.draw(k).delegates

    def configure(self, clients: np.ndarray, base: Optional[ClientSettings]) -> ClientSettings:
        """The model family's settings (NCF's may be None: nothing to tell) plus each client's
        cluster and the cluster models' dense parts."""
        return replace(base or ClientSettings(), cluster_of=self.labels[clients], cluster_dense=self.models)

    def serving_view(self) -> ClusterView:
        return ClusterView(self.labels.copy(), self.models)

    def extra_payload(self, spec) -> ExtraPayload:
        """A delegate also downloads its cluster's dense part and uploads its pass at it and its
        user-vector change."""
        dense = spec.dense_bytes()
        return ExtraPayload(
            upload_entries=dense // 4 + len(spec.user_tables) * spec.dim,
            download_bytes=dense,
            tensors=len(spec.dense_shapes()) + len(spec.user_tables),
        )

    def aggregate(
        self, merged: ClientUpdate, delta: dict[str, np.ndarray], params: dict[str, np.ndarray]
    ) -> dict[str, np.ndarray]:
        """The global dense part is FedAvg'd; FastAgg sets the item rows (eq. 5, exactly)."""
        if not len(merged.clients):
            return delta
        items = self.apply(merged, {n: params[n].copy() for n in self.spec.dense_shapes()})
        for table, update in items.items():
            params[table] += update
        return {n: v for n, v in delta.items() if n not in items}

    def apply(self, merged: ClientUpdate, global_dense: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """CaliUp on the cluster models from the delegates' passes at them (``global_dense``: w
        the delegates trained at); queues eq. 4's per-cluster mean user update; returns FastAgg's
        item update (eq. 5), to add as is. A model without user tables has no eq. 4 to queue."""
        if merged.cluster_dense_deltas is None or (self.spec.user_tables and merged.user_deltas is None):
            raise ValueError("Cali3F needs the delegates' cluster-model pass and user-vector change in their uploads")
        cluster_of = self.labels[merged.clients]
        grads = cluster_gradients(
            pseudo_gradient(merged.cluster_dense_deltas, self.client_lr), merged.n_samples, cluster_of, self.n_clusters
        )
        self.models = cali_update(self.models, global_dense, grads, self.cluster_lr, self.cfg.phi)
        means = {t: cluster_mean_update(d, cluster_of, self.n_clusters) for t, d in (merged.user_deltas or {}).items()}
        self._pending = (merged.clients, means) if means else None
        return self.ops.fastagg(merged)

    def after_round(self, pool: WorkerPool, rounds_done: int, params: dict[str, np.ndarray]) -> dict:
        """Eq. 4 on the subordinates' devices, then re-clustering when due (on the devices' user
        vectors, or for a model without them on what they derive from ``params``, the global
        model); returns record fields."""
        if self._pending is not None:
            delegates, means = self._pending
            pool.device_step("shift_subordinates", delegates, self.labels, means, self.cfg.discount)
            self._pending = None
        every = self.cfg.recluster_every
        moved = self.recluster(pool, params) if every and rounds_done % every == 0 else 0
        sizes = np.bincount(self.labels, minlength=self.n_clusters)
        return {
            "reclustered_clients": moved,
            "cluster_size_min": int(sizes.min()),
            "cluster_size_max": int(sizes.max()),
        }

    def recluster(self, pool: WorkerPool, params: dict[str, np.ndarray]) -> int:
        """Federated K-means on the user vectors from the current clusters' centroids, then
        ClusAvg; returns how many clients changed cluster."""
        p = self.n_clusters
        if self.centroids is None:
            sums, counts = _total(pool.device_step("cluster_sums", p, None, self.labels, params))
            overall = np.broadcast_to(sums.sum(axis=0) / max(1, counts.sum()), sums.shape)
            self.centroids = update_centroids(sums, counts, overall)
        for _ in range(self.cfg.recluster_iterations):
            sums, counts = _total(pool.device_step("cluster_sums", p, self.centroids, None, params))
            self.centroids = update_centroids(sums, counts, self.centroids)
        new_labels = self.labels.copy()
        for clients, labels in pool.device_step("assign_clusters", self.centroids, params):
            new_labels[clients] = labels  # a worker that did not answer keeps its clients' clusters
        moved = int((new_labels != self.labels).sum())
        self.models = clus_avg(self.models, self.labels, new_labels, self.train_samples)
        self.sampler.relabel(new_labels)
        return moved

    def state_dict(self) -> dict:
        return {
            "sampler": self.sampler.state_dict(),
            "models": {n: v.copy() for n, v in self.models.items()},
            "centroids": None if self.centroids is None else self.centroids.copy(),
        }

    def load_state_dict(self, state: Optional[dict]) -> None:
        if state is None:
            raise ValueError("the checkpoint has no Cali3F state: it was written by a run with another fl.strategy")
        self.sampler.load_state_dict(state["sampler"])
        self.models = {n: np.array(v) for n, v in state["models"].items()}
        self.centroids = None if state["centroids"] is None else np.array(state["centroids"])


def client_metadata(cfg: Cali3FConfig, world) -> np.ndarray:
    """The one-hot user columns Cali3F's first clusters come from (``fl.strategy.metadata``)."""
    features = world.dataset.user_features
    missing = sorted(set(cfg.metadata) - set(features.names()))
    if missing:
        raise ConfigError(
            f"fl.strategy.metadata names {missing}, which the dataset {world.dataset.name!r} lacks "
            f"(its user columns: {features.names()})"
        )
    if cfg.n_clusters > world.population.n_clients:
        raise ConfigError(f"fl.strategy.n_clusters={cfg.n_clusters} exceeds the {world.population.n_clients} clients")
    return encode_metadata(features, cfg.metadata)


def _total(parts: list[tuple[np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray]:
    """Per-cluster sums (float, decoded) and counts added over workers (exactly: fixed point)."""
    if not parts:
        raise RuntimeError("no client worker answered the re-clustering step")
    sums = np.sum([s for s, _ in parts], axis=0)
    return sums.astype(np.float64) / FIXED_POINT_SCALE, np.sum([c for _, c in parts], axis=0)
