"""Cali3F's device half: a delegate trains twice, at the global model (its dense update feeds
FedAvg) and at its cluster's model (CaliUp's gradient, and the embedding rows and user vector that
serve it); every client is served its cluster's dense part; and the server asks the devices for
eq. 4 and for the steps of the federated re-clustering, which need the vectors only the devices
hold (``WorkerPool.device_step``)."""

from __future__ import annotations

from dataclasses import replace
from typing import Optional

import numpy as np

from cluster.fl.strategies.base import DeviceHalf
from cluster.fl.strategies.cali3f.clustering import assign_clusters, fixed_point_sums
from cluster.fl.strategies.cali3f.maths import subordinate_user_update
from cluster.fl.types import ClusterView


class ClusterModels(DeviceHalf):
    def after_local(self, core, local, rows, settings, result):
        if settings is None or settings.cluster_of is None:
            return result
        own = settings.own_cluster_dense()
        at_cluster = local.pass_at(own)
        return replace(
            at_cluster,
            loss=result.loss,
            dense_deltas={n: (result if n in own else at_cluster).dense_deltas[n] for n in at_cluster.dense_deltas},
            cluster_dense_deltas={n: at_cluster.dense_deltas[n] for n in own},
        )

    def served_dense(self, core, rows: np.ndarray, clusters: Optional[ClusterView]) -> Optional[dict[str, np.ndarray]]:
        if clusters is None:
            return None
        cluster_of = clusters.labels[core.shard.clients[rows]]
        return {n: v[cluster_of] for n, v in clusters.dense.items()}

    def shift_subordinates(
        self, core, delegates: np.ndarray, labels: np.ndarray, mean_update: dict[str, np.ndarray], discount: float
    ) -> None:
        """Eq. 4 on the device: every client of ``core`` that was not a delegate this round moves
        its user vectors by ``discount`` × its cluster's ``mean_update[table]`` (P, d)."""
        missing = sorted(set(mean_update) - set(core.users))
        if missing:
            raise ValueError(f"these clients keep no user table {missing} to shift")
        rows = np.flatnonzero(~np.isin(core.shard.clients, delegates))
        cluster_of = labels[core.shard.clients[rows]]
        for table, update in mean_update.items():
            core.users[table][rows] = subordinate_user_update(core.users[table][rows], cluster_of, update, discount)

    def cluster_sums(
        self,
        core,
        n_clusters: int,
        centroids: Optional[np.ndarray],
        labels: Optional[np.ndarray],
        params: dict[str, np.ndarray],
    ) -> tuple[np.ndarray, np.ndarray]:
        """This worker's share of a Lloyd step: fixed-point sums (P, f) and counts (P,) of its
        clients' vectors per cluster, clusters given (``labels`` (n_users,)) or nearest to
        ``centroids`` (P, f). ``params``: the global model, for a family whose device derives its
        vector from it."""
        vectors = core.clustering_vectors(params)
        if labels is not None:
            mine = labels[core.shard.clients]
        elif centroids is not None:
            mine = assign_clusters(vectors, centroids)
        else:
            raise ValueError("cluster_sums needs the clusters (labels) or the centroids to assign them by")
        return fixed_point_sums(vectors, mine, n_clusters)

    def assign_clusters(
        self, core, centroids: np.ndarray, params: dict[str, np.ndarray]
    ) -> tuple[np.ndarray, np.ndarray]:
        """(clients, nearest centroid of each): what each device reports after re-clustering."""
        return core.shard.clients, assign_clusters(core.clustering_vectors(params), centroids)
