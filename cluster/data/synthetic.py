"""The embedded default world: a synthetic recommendation data set, deterministic by seed.

Users carry demographics (gender, age bucket, occupation, region) that shape a latent taste
vector, so metadata clustering (Cali3F's ClusSamp) and tier mapping see real structure. Items
belong to groups with their own latent centroid and have power-law popularity. User activity
is log-normal (heavy-tailed). A user's items are drawn group-first (softmax of taste against the
group centroids, weighted by the group's popularity mass), then by popularity inside the group;
ratings follow the user-item affinity.

Users are generated in fixed blocks, each with its own child seed, so the result does not depend
on how the work is chunked, and memory stays bounded by one block at a time.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from configs.schema import SyntheticConfig
from cluster.data.types import CategoricalFeatures, Dataset, Interactions, ItemFeatures

GENERATOR_VERSION = 1
USER_BLOCK = 32_768
_START_TIME = 1_577_836_800  # 2020-01-01, so timestamps read like real ones
_DEMOGRAPHICS = {
    "gender": ["F", "M"],
    "age": ["Under 18", "18-24", "25-34", "35-44", "45-49", "50-55", "56+"],
    "occupation": [f"occ-{i:02d}" for i in range(21)],
    "region": [str(i) for i in range(10)],
}
_DEMOGRAPHIC_PROBS = {
    "gender": [0.35, 0.65],
    "age": [0.05, 0.25, 0.35, 0.17, 0.08, 0.06, 0.04],
}


def generate_synthetic(cfg: SyntheticConfig, seed: int) -> Dataset:
    root = np.random.SeedSequence([seed, GENERATOR_VERSION])
    world_seq, users_seq, activity_seq, blocks_seq = root.spawn(4)
    world = _World.build(cfg, np.random.default_rng(world_seq))
    demographics, tastes = _users(cfg, world, np.random.default_rng(users_seq))
    counts = _activity(cfg, np.random.default_rng(activity_seq))

    n_blocks = -(-cfg.n_users // USER_BLOCK)
    block_seqs = blocks_seq.spawn(n_blocks)
    parts = []
    for block in range(n_blocks):
        lo, hi = block * USER_BLOCK, min(cfg.n_users, (block + 1) * USER_BLOCK)
        parts.append(
            _block_interactions(lo, counts[lo:hi], tastes[lo:hi], world, cfg, np.random.default_rng(block_seqs[block]))
        )
    users, items, ratings, timestamps = (np.concatenate([p[i] for p in parts]) for i in range(4))

    group_names = [f"group-{g:02d}" for g in range(cfg.n_groups)]
    genres = np.zeros((cfg.n_items, cfg.n_groups), dtype=bool)
    genres[np.arange(cfg.n_items), world.item_group] = True
    return Dataset(
        name=f"synthetic:{cfg.n_users}x{cfg.n_items}",
        interactions=Interactions(users, items, ratings, timestamps, cfg.n_users, cfg.n_items),
        user_ids=np.arange(cfg.n_users, dtype=np.int64),
        item_ids=np.arange(cfg.n_items, dtype=np.int64),
        user_features=CategoricalFeatures(codes=demographics, vocab={k: list(v) for k, v in _DEMOGRAPHICS.items()}),
        item_features=ItemFeatures(
            genres=genres,
            genre_names=group_names,
            group=world.item_group,
            group_names=group_names,
            titles=np.asarray([f"item {i}" for i in range(cfg.n_items)], dtype=object),
        ),
    )


@dataclass
class _World:
    """Everything item-side plus the demographic embeddings: small, built once."""

    centroids: np.ndarray  # (groups, d) float32
    item_group: np.ndarray  # (items,) int32
    item_factors: np.ndarray  # (items, d) float32
    items_by_group: np.ndarray  # (items,) int32: item ids sorted by group
    item_cdf: np.ndarray  # (items,) float64: group g's items span [g, g+1) in popularity order
    log_group_mass: np.ndarray  # (groups,) float32
    demographic_emb: dict[str, np.ndarray]  # demographic → (values, d) float32

    @classmethod
    def build(cls, cfg: SyntheticConfig, rng: np.random.Generator) -> "_World":
        d, n_groups, n_items = cfg.latent_dim, cfg.n_groups, cfg.n_items
        centroids = rng.standard_normal((n_groups, d)).astype(np.float32)
        sizes = rng.dirichlet(np.full(n_groups, 2.0))
        item_group = np.concatenate([np.arange(n_groups), rng.choice(n_groups, n_items - n_groups, p=sizes)])
        item_group = rng.permutation(item_group[:n_items]).astype(np.int32)
        item_factors = (centroids[item_group] + 0.6 * rng.standard_normal((n_items, d))).astype(np.float32)

        rank = rng.permutation(n_items) + 1
        popularity = rank.astype(np.float64) ** -cfg.popularity_exponent
        # Items sorted by group; a cumulative table where group g spans [g, g+1) lets one
        # searchsorted pick "an item of group g by popularity" for many draws at once.
        by_group = np.lexsort((np.arange(n_items), item_group))
        group_mass = np.bincount(item_group, weights=popularity, minlength=n_groups)
        within = popularity[by_group] / group_mass[item_group[by_group]]
        starts = np.r_[0, np.cumsum(np.bincount(item_group, minlength=n_groups))[:-1]]
        cumulative = np.cumsum(within)
        cumulative -= np.repeat(np.r_[0.0, cumulative[starts[1:] - 1]], np.bincount(item_group, minlength=n_groups))
        item_cdf = item_group[by_group] + np.minimum(cumulative, 1.0)

        demographic_emb = {
            name: (0.7 * rng.standard_normal((len(values), d)) / np.sqrt(len(_DEMOGRAPHICS))).astype(np.float32)
            for name, values in _DEMOGRAPHICS.items()
        }
        return cls(
            centroids=centroids,
            item_group=item_group,
            item_factors=item_factors,
            items_by_group=by_group.astype(np.int32),
            item_cdf=item_cdf,
            log_group_mass=np.log(group_mass / group_mass.sum()).astype(np.float32),
            demographic_emb=demographic_emb,
        )


def _users(cfg: SyntheticConfig, world: _World, rng: np.random.Generator) -> tuple[dict[str, np.ndarray], np.ndarray]:
    codes = {}
    taste = np.zeros((cfg.n_users, cfg.latent_dim), dtype=np.float32)
    for name, values in _DEMOGRAPHICS.items():
        codes[name] = rng.choice(len(values), size=cfg.n_users, p=_DEMOGRAPHIC_PROBS.get(name)).astype(np.int32)
        taste += world.demographic_emb[name][codes[name]]
    taste += 0.7 * rng.standard_normal(taste.shape).astype(np.float32)
    return codes, taste


def _activity(cfg: SyntheticConfig, rng: np.random.Generator) -> np.ndarray:
    """Interactions per user: min + a log-normal share of the rest, capped at half the catalogue."""
    weights = rng.lognormal(0.0, cfg.activity_sigma, size=cfg.n_users)
    spare = cfg.target_interactions - cfg.n_users * cfg.min_user_interactions
    extra = np.floor(spare * weights / weights.sum() + rng.random(cfg.n_users)).astype(np.int64)
    return np.minimum(cfg.min_user_interactions + extra, cfg.n_items // 2)


def _block_interactions(
    first_user: int,
    counts: np.ndarray,
    tastes: np.ndarray,
    world: _World,
    cfg: SyntheticConfig,
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    n_block = len(counts)
    unit_taste = tastes / np.linalg.norm(tastes, axis=1, keepdims=True)
    unit_centroids = world.centroids / np.linalg.norm(world.centroids, axis=1, keepdims=True)
    logits = cfg.taste_temperature * unit_taste @ unit_centroids.T + world.log_group_mass
    probs = np.exp(logits - logits.max(axis=1, keepdims=True))
    group_cdf = np.cumsum(probs / probs.sum(axis=1, keepdims=True), axis=1)

    # Over-draw, drop repeats, keep each user's first `count` distinct items in draw order.
    draws = np.ceil(counts * 1.3).astype(np.int64) + 3
    local_users = np.repeat(np.arange(n_block), draws)
    items = _draw_items(local_users, group_cdf, world, rng)
    local_users, items = _first_distinct(local_users, items, counts, cfg.n_items)
    missing = counts - np.bincount(local_users, minlength=n_block)
    while missing.any():
        # Rare: users whose taste is concentrated on a few popular items. Top up uniformly.
        extra_users = np.repeat(np.arange(n_block), np.maximum(missing, 0) * 2)
        extra_items = rng.integers(0, cfg.n_items, size=len(extra_users)).astype(np.int32)
        local_users, items = _first_distinct(
            np.concatenate([local_users, extra_users]), np.concatenate([items, extra_items]), counts, cfg.n_items
        )
        missing = counts - np.bincount(local_users, minlength=n_block)

    affinity = np.einsum("nd,nd->n", tastes[local_users], world.item_factors[items]) / np.sqrt(cfg.latent_dim)
    noisy = 3.2 + 0.8 * affinity + 0.7 * rng.standard_normal(len(items))
    ratings = np.clip(np.rint(noisy), 1, 5).astype(np.float32)

    gaps = rng.exponential(86_400.0, size=len(items))
    elapsed = np.cumsum(gaps)
    first = np.r_[0, np.flatnonzero(np.diff(local_users)) + 1]
    seg_counts = np.diff(np.r_[first, len(items)])
    elapsed -= np.repeat(elapsed[first] - gaps[first], seg_counts)
    start = rng.integers(0, 365 * 86_400, size=n_block)
    timestamps = (_START_TIME + start[local_users] + elapsed).astype(np.int64)
    return (local_users + first_user).astype(np.int32), items, ratings, timestamps


def _draw_items(local_users: np.ndarray, group_cdf: np.ndarray, world: _World, rng: np.random.Generator) -> np.ndarray:
    n_groups = group_cdf.shape[1]
    group = np.empty(len(local_users), dtype=np.int64)
    step = 1_000_000  # bounds the (draws, groups) comparison matrix
    pick = rng.random(len(local_users))
    for lo in range(0, len(local_users), step):
        sl = slice(lo, lo + step)
        group[sl] = (group_cdf[local_users[sl]] < pick[sl, None]).sum(axis=1)
    np.minimum(group, n_groups - 1, out=group)
    position = np.searchsorted(world.item_cdf, group + rng.random(len(local_users)), side="right")
    position = np.minimum(position, len(world.items_by_group) - 1)
    return world.items_by_group[position]


def _first_distinct(
    local_users: np.ndarray, items: np.ndarray, counts: np.ndarray, n_items: int
) -> tuple[np.ndarray, np.ndarray]:
    keys = local_users.astype(np.int64) * n_items + items
    _, first_index = np.unique(keys, return_index=True)
    first_index.sort()  # back to draw order
    first_index = first_index[np.argsort(local_users[first_index], kind="stable")]
    users, items = local_users[first_index], items[first_index]
    segment_start = np.r_[0, np.flatnonzero(np.diff(users)) + 1]
    rank = np.arange(len(users)) - np.repeat(segment_start, np.diff(np.r_[segment_start, len(users)]))
    keep = rank < counts[users]
    return users[keep], items[keep].astype(np.int32)
