"""Cali3F's client clusters (Zhu et al. 2022, §III): ClusSamp's K-means over privacy-neutral
metadata and its per-cluster round-robin of delegates, the federated re-clustering on user
embeddings, and ClusAvg, which carries the cluster models over to the new clusters.

Re-clustering runs K-means on the *private* user vectors, so it cannot run where the vectors
would have to meet. It is Lloyd's algorithm split along the privacy line: a device finds its
nearest centroid and adds its vector into per-cluster sums (``assign_clusters``,
``cluster_sums``: on the worker that holds the vector); the server only divides the summed
totals (``update_centroids``). A test checks that ``recluster`` equals scikit-learn's KMeans
warm-started from the same centroids. The first centroids come from the metadata clusters.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from cluster.data.types import CategoricalFeatures
from cluster.fl.selection import EpochSampler

# Zip code / region stay out by default: a fine location is close to an identifier.
DEFAULT_METADATA = ("age", "gender", "occupation")


def encode_metadata(features: CategoricalFeatures, columns: Sequence[str] = DEFAULT_METADATA) -> np.ndarray:
    """One-hot blocks of the chosen categorical columns, (n_users, Σ vocab sizes) float32.

    One-hot rather than codes: codes of an unordered vocabulary (occupation; ML-100K's age
    buckets sort alphabetically) would invent distances. Two users differing in one column are
    √2 apart whatever the column's vocabulary size, so every column weighs the same."""
    missing = [c for c in columns if c not in features.codes]
    if missing:
        raise ValueError(f"unknown metadata column(s) {missing}; have {features.names()}")
    blocks = []
    for column in columns:
        codes = features.codes[column]
        block = np.zeros((len(codes), len(features.vocab[column])), dtype=np.float32)
        block[np.arange(len(codes)), codes] = 1.0
        blocks.append(block)
    return np.concatenate(blocks, axis=1)


def cluster_metadata(features: np.ndarray, n_clusters: int, seed: int, n_init: int = 10) -> np.ndarray:
    """ClusSamp's initial partition: scikit-learn K-means (k-means++, fixed random_state) on the
    encoded metadata (n, f); returns labels (n,) int64 in 0..n_clusters-1."""
    if not 1 <= n_clusters <= len(features):
        raise ValueError(f"need 1 <= n_clusters <= {len(features)} clients, got {n_clusters}")
    from sklearn.cluster import KMeans  # lazily: see cluster/fl/families/click/auc_metrics.py

    model = KMeans(n_clusters=n_clusters, n_init=n_init, random_state=seed)
    return model.fit_predict(np.asarray(features, dtype=np.float64)).astype(np.int64)


@dataclass(frozen=True)
class ClusterRound:
    """One round of ClusSamp, every array ascending by client id.

    delegates, delegate_cluster: (m,) the clients that train and their clusters;
    subordinates, subordinate_cluster: (s,) every other member of a cluster."""

    delegates: np.ndarray
    delegate_cluster: np.ndarray
    subordinates: np.ndarray
    subordinate_cluster: np.ndarray


class ClusterSampler:
    """Picks each cluster's delegates round-robin at random: inside a cluster no client is a
    delegate again before every eligible member was one (an EpochSampler per cluster).

    labels: (n,) cluster of every client; eligible: (n,) bool, clients with training data (the
    others can only be subordinates)."""

    def __init__(self, labels: np.ndarray, n_clusters: int, eligible: np.ndarray, rng: np.random.Generator):
        self.n_clusters = n_clusters
        self.eligible = np.asarray(eligible, dtype=bool)
        self.rng = rng
        self.relabel(labels)

    def relabel(self, labels: np.ndarray) -> None:
        """Adopt a new partition (after re-clustering); every cluster's round-robin restarts."""
        self.labels = np.asarray(labels, dtype=np.int64)
        if (
            len(self.labels) != len(self.eligible)
            or self.labels.min(initial=0) < 0
            or self.labels.max(initial=0) >= self.n_clusters
        ):
            raise ValueError("labels must give every client a cluster in 0..n_clusters-1")
        members = [np.flatnonzero((self.labels == p) & self.eligible) for p in range(self.n_clusters)]
        # One child generator per cluster, seeded from self.rng (whose state is checkpointed), so
        # a cluster's draws do not depend on the other clusters' sizes.
        children = [np.random.default_rng(int(s)) for s in self.rng.integers(2**63, size=self.n_clusters)]
        self.samplers = [EpochSampler(ids, g) if len(ids) else None for ids, g in zip(members, children)]

    def quotas(self, m: int) -> np.ndarray:
        """Delegates per cluster (P,): m // P each; the remainder goes to the clusters with the
        most eligible members (ties: lower index); capped at a cluster's eligible members, and
        what a small cluster cannot fill goes, one by one, to the clusters with the most room,
        so a round keeps its budget of m delegates while there are m eligible clients."""
        sizes = np.array([0 if s is None else len(s.eligible) for s in self.samplers])
        quota = np.full(self.n_clusters, m // self.n_clusters, dtype=np.int64)
        quota[np.argsort(-sizes, kind="stable")[: m % self.n_clusters]] += 1
        quota = np.minimum(quota, sizes)
        for _ in range(min(m, int(sizes.sum())) - int(quota.sum())):
            quota[np.argmax(sizes - quota)] += 1
        return quota

    def draw(self, m: int) -> ClusterRound:
        """Delegates for one round (about m in all) and the subordinates that stay home."""
        picked = [s.draw(int(k)) for s, k in zip(self.samplers, self.quotas(m)) if s is not None and k > 0]
        delegates = np.sort(np.concatenate(picked)) if picked else np.zeros(0, np.int64)
        is_delegate = np.zeros(len(self.labels), dtype=bool)
        is_delegate[delegates] = True
        subordinates = np.flatnonzero(~is_delegate)
        return ClusterRound(delegates, self.labels[delegates], subordinates, self.labels[subordinates])

    def state_dict(self) -> dict:
        return {
            "labels": self.labels.copy(),
            "rng": self.rng.bit_generator.state,
            "samplers": [None if s is None else s.state_dict() for s in self.samplers],
        }

    def load_state_dict(self, state: dict) -> None:
        self.relabel(state["labels"])
        self.rng.bit_generator.state = state["rng"]
        for sampler, saved in zip(self.samplers, state["samplers"]):
            if sampler is not None:
                sampler.load_state_dict(saved)


# --------------------------------------------------------------------------- re-clustering
def assign_clusters(users: np.ndarray, centroids: np.ndarray) -> np.ndarray:
    """On the device: the nearest centroid (Euclidean) of each user vector. users: (n, f);
    centroids: (P, f); returns (n,) int64. Ties go to the lower index."""
    from sklearn.metrics import pairwise_distances_argmin  # lazily: see cluster/fl/families/click/auc_metrics.py

    return pairwise_distances_argmin(np.asarray(users, np.float64), np.asarray(centroids, np.float64)).astype(np.int64)


def cluster_sums(users: np.ndarray, labels: np.ndarray, n_clusters: int) -> tuple[np.ndarray, np.ndarray]:
    """On the device side: per-cluster sums (P, f) float64 and member counts (P,) int64. Only
    these totals go to the server, which adds them over workers (a secure-aggregation sum)."""
    sums = np.zeros((n_clusters, users.shape[1]), dtype=np.float64)
    np.add.at(sums, labels, np.asarray(users, np.float64))
    return sums, np.bincount(labels, minlength=n_clusters).astype(np.int64)


# Secure aggregation adds integers mod 2^k, so devices encode their vectors in fixed point; integer
# addition is exact and associative, which also makes the totals independent of how clients are
# spread over workers (float sums would differ in the last bits).
FIXED_POINT_SCALE = 2.0**24


def fixed_point_sums(users: np.ndarray, labels: np.ndarray, n_clusters: int) -> tuple[np.ndarray, np.ndarray]:
    """``cluster_sums`` in fixed point: int64 sums (P, f) of round(v · 2^24), counts (P,)."""
    sums = np.zeros((n_clusters, users.shape[1]), dtype=np.int64)
    np.add.at(sums, labels, np.rint(np.asarray(users, np.float64) * FIXED_POINT_SCALE).astype(np.int64))
    return sums, np.bincount(labels, minlength=n_clusters).astype(np.int64)


def update_centroids(sums: np.ndarray, counts: np.ndarray, previous: np.ndarray) -> np.ndarray:
    """On the server: the Lloyd update, mean = sum / count (P, f). An empty cluster keeps its
    previous centroid rather than vanishing, so P stays fixed and it may win members back."""
    out = np.array(previous, dtype=np.float64, copy=True)
    full = counts > 0
    out[full] = sums[full] / counts[full, None]
    return out


def recluster(users: np.ndarray, centroids: np.ndarray, iterations: int) -> tuple[np.ndarray, np.ndarray]:
    """``iterations`` Lloyd steps from ``centroids`` (P, f) on the user vectors (n, f), then a
    final assignment; returns (labels (n,), centroids (P, f)). In-process composition of the
    device and server halves above, which the actors run apart."""
    for _ in range(iterations):
        sums, counts = cluster_sums(users, assign_clusters(users, centroids), len(centroids))
        centroids = update_centroids(sums, counts, centroids)
    return assign_clusters(users, centroids), centroids


def initial_centroids(users: np.ndarray, labels: np.ndarray, n_clusters: int) -> np.ndarray:
    """Centroids (P, f) of the metadata clusters in embedding space: re-clustering starts from
    ClusSamp's partition, so cluster identities carry over. An empty cluster gets the overall mean."""
    sums, counts = cluster_sums(users, labels, n_clusters)
    overall = np.broadcast_to(sums.sum(axis=0) / max(1, counts.sum()), sums.shape)
    return update_centroids(sums, counts, overall)


def clus_avg(
    models: dict[str, np.ndarray], old_labels: np.ndarray, new_labels: np.ndarray, weights: np.ndarray | None = None
) -> dict[str, np.ndarray]:
    """ClusAvg: the cluster models' N parts carried into the new partition,

        v'_q = Σ_p n_{p→q} v_p / Σ_p n_{p→q},

    n_{p→q} the members moved from old cluster p to new cluster q (or their summed ``weights``
    (n,), e.g. sample counts). models[name]: (P, *shape); labels: (n,). A new cluster with no
    members keeps its old model."""
    n_clusters = next(iter(models.values())).shape[0]
    w = np.ones(len(old_labels)) if weights is None else np.asarray(weights, dtype=np.float64)
    moved = np.zeros((n_clusters, n_clusters), dtype=np.float64)  # [new q, old p]
    np.add.at(moved, (new_labels, old_labels), w)
    total = moved.sum(axis=1)
    mix = np.divide(moved, total[:, None], out=np.eye(n_clusters), where=total[:, None] > 0)
    return {name: np.tensordot(mix, v.astype(np.float64), axes=1).astype(v.dtype) for name, v in models.items()}
