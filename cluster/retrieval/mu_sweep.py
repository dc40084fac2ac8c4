"""Recall of the shard indexes over a sweep of the per-group offsets μ, on a catalogue whose
groups sit in clusters and one of which every user scores low (the case FairSync lifts).

An approximate index can only miss items, and which ones depends on μ: fetched by relevance it
misses a low-scoring group once μ lifts it into the top-K; fetched through lists whose probe
mixes μ with the lists' own geometry it can miss at small μ or after a constant shift of every
μ (which leaves the exact answer unchanged). So recall is measured at every point of the sweep
and a way is judged by its minimum. Pure: no Ray, no files; the benchmark (jobs/bench_index.py
--mu-sweep) and the unit tests share it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from cluster.retrieval.shard_index import IndexSettings, ShardIndex, merge_top_k

# The low group's lift, in σ (the spread of all query-item scores): from none to far past the
# point where its items fill the whole top-K.
LIFTS = (0.0, 0.25, 0.5, 0.75, 1.0, 1.25, 1.5, 2.0, 2.5, 3.0, 4.0)
# A constant added to every μ (in σ) at a given lift: the exact answer does not move, so neither
# should an index's.
SHIFTS = ((0.0, 2.0), (0.0, -2.0), (1.25, -2.0))


@dataclass(frozen=True)
class SweepWorld:
    """vectors (n, d) float32, groups (n,), queries (q, d) float32; ``low_group`` is the group
    every user scores low, ``sigma`` the spread of query-item scores."""

    vectors: np.ndarray
    groups: np.ndarray
    queries: np.ndarray
    n_groups: int
    low_group: int
    sigma: float


def skewed_world(n_items: int, dim: int, n_groups: int, n_queries: int, seed: int = 0) -> SweepWorld:
    """The synthetic catalogue (items around group centroids, users mixing a few of them) with
    the last group disliked by every user."""
    from cluster.retrieval.synthetic_embeddings import synthetic_catalog
    from configs.schema import SyntheticEmbeddingsConfig

    low = n_groups - 1
    cfg = SyntheticEmbeddingsConfig(n_items=n_items, n_users=n_queries, dim=dim, n_groups=n_groups, disliked_group=low)
    catalog, _ = synthetic_catalog(cfg, np.random.default_rng(seed), with_heldout=False)
    sigma = float(np.std(catalog.user_vectors[:256] @ catalog.item_vectors.T))
    return SweepWorld(catalog.item_vectors, catalog.item_groups, catalog.user_vectors, n_groups, low, sigma)


def mu_sweep(world: SweepWorld) -> list[tuple[str, np.ndarray]]:
    """(label, μ) for each point: the low group lifted by each of LIFTS, then each of SHIFTS."""

    def mu(lift: float, shift: float = 0.0) -> np.ndarray:
        offsets = np.full(world.n_groups, shift * world.sigma, dtype=np.float32)
        offsets[world.low_group] -= lift * world.sigma
        return offsets

    points = [(f"lift {lift:g}σ", mu(lift)) for lift in LIFTS]
    return points + [(f"lift {lift:g}σ, all {shift:+g}σ", mu(lift, shift)) for lift, shift in SHIFTS]


def exact_top_k(world: SweepWorld, mu: np.ndarray, k: int) -> np.ndarray:
    """Each query's k best items by s − μ_g, best first."""
    adjusted = world.queries @ world.vectors.T - mu[world.groups]
    top = np.argpartition(-adjusted, k - 1, axis=1)[:, :k]
    order = np.argsort(-np.take_along_axis(adjusted, top, axis=1), axis=1, kind="stable")
    return np.take_along_axis(top, order, axis=1)


def recall_at_k(found: np.ndarray, exact: np.ndarray) -> float:
    return float(np.mean([len(set(a) & set(b)) / exact.shape[1] for a, b in zip(found, exact)]))


def build_shards(world: SweepWorld, n_shards: int, settings: IndexSettings, seed: int = 0) -> list[ShardIndex]:
    """ShardIndex over a random near-equal split of the items, as the retriever splits them."""
    parts = np.array_split(np.random.default_rng(seed).permutation(len(world.vectors)), n_shards)
    return [
        ShardIndex(rows, world.vectors[rows], world.groups[rows], world.n_groups, settings, seed=seed) for rows in parts
    ]


def search_shards(shards: list[ShardIndex], queries: np.ndarray, k: int) -> np.ndarray:
    """The merged top-k item ids, every shard searched in turn."""
    return merge_top_k([shard.search(queries, k) for shard in shards], k).items


def sweep_recall(
    shards: list[ShardIndex], world: SweepWorld, k: int, points: list[tuple[str, np.ndarray]] | None = None
) -> list[float]:
    """Recall@k of the merged answer against the exact top-k by s − μ at each point of the sweep."""
    recalls = []
    for _, mu in points if points is not None else mu_sweep(world):
        for shard in shards:
            shard.set_mu(mu)
        recalls.append(recall_at_k(search_shards(shards, world.queries, k), exact_top_k(world, mu, k)))
    return recalls
