"""Users to device tiers: RF² Algorithm 1 (Dirichlet, popularity-ordered) and Random.

RF² (Maeng et al., RecSys 2022) makes tiers differ in what their users like: items are visited
in descending popularity; each item draws tier probabilities from Dirichlet(α); the largest
probability goes to the tier that has the fewest users so far (balancing); every not-yet-mapped
user who clicked the item is mapped by that draw. Users who clicked nothing go through one
extra "null item". Small α gives near one-hot draws (strong heterogeneity), large α near-uniform
ones (close to Random).
"""

from __future__ import annotations

from typing import Optional

import numpy as np

from configs.schema import TierMappingConfig
from cluster.arrays import sorted_unique
from cluster.data.types import Interactions

PRESET_ALPHA = {
    "hetero-vlow": 5000.0,
    "hetero-low": 5.0,
    "hetero-mid": 0.5,
    "hetero-high": 0.05,
    "hetero-vhigh": 0.005,
}
PRESETS = ("random", *PRESET_ALPHA)


def random_tier_mapping(n_users: int, shares: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """(n_users,) int8: each user's tier drawn independently with probabilities ``shares``."""
    return rng.choice(len(shares), size=n_users, p=shares).astype(np.int8)


def _dirichlet(alpha: float, n_tiers: int, rng: np.random.Generator) -> np.ndarray:
    p = rng.dirichlet(np.full(n_tiers, alpha))
    if not np.all(np.isfinite(p)) or p.sum() <= 0:
        # Underflow at tiny α: the limit of Dirichlet(α→0) is a uniformly random one-hot.
        p = np.zeros(n_tiers)
        p[rng.integers(n_tiers)] = 1.0
    return p / p.sum()


def dirichlet_tier_mapping(
    clicks: Interactions,
    shares: np.ndarray,
    alpha: float,
    rng: np.random.Generator,
    balance: bool = True,
) -> np.ndarray:
    """(n_users,) int8 tier per user, RF² Algorithm 1 over the positive interactions ``clicks``.

    With ``balance``, "fewest users" is measured relative to each tier's share, so unequal
    shares are honoured; with equal shares it is exactly RF²'s count balancing.
    """
    n_tiers = len(shares)
    tier_of_user = np.full(clicks.n_users, -1, dtype=np.int8)
    assigned = np.zeros(n_tiers, dtype=np.int64)

    def assign(users: np.ndarray) -> None:
        p = _dirichlet(alpha, n_tiers, rng)
        if balance:
            # Largest probability to the most under-filled tier (ties: lower tier id first).
            neediest_first = np.lexsort((np.arange(n_tiers), assigned / shares))
            balanced = np.empty(n_tiers)
            balanced[neediest_first] = np.sort(p)[::-1]
            p = balanced
        draws = rng.choice(n_tiers, size=len(users), p=p).astype(np.int8)
        tier_of_user[users] = draws
        assigned[:] += np.bincount(draws, minlength=n_tiers)

    for users in _clickers_by_popularity(clicks):
        fresh = sorted_unique(users[tier_of_user[users] < 0])
        if len(fresh):
            assign(fresh)
    unclicked = np.flatnonzero(tier_of_user < 0)
    if len(unclicked):
        assign(unclicked)  # the "null item"
    return tier_of_user


def _clickers_by_popularity(clicks: Interactions):
    """The users who clicked each item, most clicked item first (ties: lower item id first)."""
    counts = clicks.item_counts()
    by_popularity = np.lexsort((np.arange(clicks.n_items), -counts))
    order = np.argsort(clicks.items, kind="stable")
    indptr = np.r_[0, np.cumsum(counts)]
    users_sorted = clicks.users[order]
    for item in by_popularity:
        if counts[item] == 0:
            break
        yield users_sorted[indptr[item] : indptr[item + 1]]


def preset_alpha(cfg: TierMappingConfig) -> Optional[float]:
    """α of the configured mapping; None for Random."""
    if cfg.mapping == "random":
        return None
    if cfg.mapping == "dirichlet":
        return cfg.alpha
    return PRESET_ALPHA[cfg.mapping]


def map_users_to_tiers(
    cfg: TierMappingConfig, clicks: Interactions, shares: np.ndarray, rng: np.random.Generator
) -> np.ndarray:
    alpha = preset_alpha(cfg)
    if alpha is None:
        return random_tier_mapping(clicks.n_users, shares, rng)
    return dirichlet_tier_mapping(clicks, shares, alpha, rng, balance=cfg.balance)
