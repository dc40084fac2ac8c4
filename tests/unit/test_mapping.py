import numpy as np
import pytest

from configs import load_config
from cluster.data.types import Interactions
from cluster.data.views import click_view
from cluster.tiers.heterogeneity import mean_js_divergence, tier_heterogeneity
from cluster.tiers.mapping import PRESET_ALPHA, dirichlet_tier_mapping, map_users_to_tiers, random_tier_mapping

EQUAL = np.ones(3) / 3


def _clicks(rng, n_users=600, n_items=200, per_user=4, idle_users=30):
    """A mild power law: no single item holds more than a few percent of the users."""
    users = np.repeat(np.arange(n_users - idle_users), per_user)
    popularity = np.arange(1, n_items + 1) ** -0.3
    items = rng.choice(n_items, size=len(users), p=popularity / popularity.sum())
    return Interactions(users.astype(np.int32), items.astype(np.int32), np.ones(len(users), np.float32),
                        np.arange(len(users)), n_users, n_items)


def test_every_user_mapped_and_balanced():
    clicks = _clicks(np.random.default_rng(0))
    tiers = dirichlet_tier_mapping(clicks, EQUAL, alpha=0.05, rng=np.random.default_rng(1))
    assert tiers.min() >= 0 and tiers.max() <= 2
    sizes = np.bincount(tiers, minlength=3)
    assert sizes.max() - sizes.min() < 0.2 * len(tiers), sizes


def test_tiny_alpha_sends_each_items_new_users_to_one_tier():
    clicks = _clicks(np.random.default_rng(0))
    tiers = dirichlet_tier_mapping(clicks, EQUAL, alpha=1e-4, rng=np.random.default_rng(2))
    top_item = np.bincount(clicks.items).argmax()
    assert len(np.unique(tiers[np.unique(clicks.users[clicks.items == top_item])])) == 1
    idle = np.setdiff1d(np.arange(clicks.n_users), clicks.users)
    assert len(np.unique(tiers[idle])) == 1, "unclicked users share the null item's draw"


def test_balance_switch_and_shares():
    clicks = _clicks(np.random.default_rng(0))
    skewed = np.array([0.6, 0.2, 0.2])
    tiers = dirichlet_tier_mapping(clicks, skewed, alpha=0.05, rng=np.random.default_rng(3))
    share = np.bincount(tiers, minlength=3) / len(tiers)
    assert abs(share[0] - 0.6) < 0.12, share
    unbalanced = dirichlet_tier_mapping(clicks, EQUAL, 0.005, np.random.default_rng(3), balance=False)
    assert unbalanced.shape == tiers.shape


def test_random_mapping_follows_shares_and_seed():
    a = random_tier_mapping(30_000, np.array([0.5, 0.3, 0.2]), np.random.default_rng(0))
    assert np.allclose(np.bincount(a) / 30_000, [0.5, 0.3, 0.2], atol=0.01)
    assert np.array_equal(a, random_tier_mapping(30_000, np.array([0.5, 0.3, 0.2]), np.random.default_rng(0)))


def test_config_dispatch():
    clicks = _clicks(np.random.default_rng(0))
    for mapping in ("random", *PRESET_ALPHA):
        cfg = load_config(None, [f"tier_mapping.mapping={mapping}"]).tier_mapping
        tiers = map_users_to_tiers(cfg, clicks, EQUAL, np.random.default_rng(0))
        assert len(tiers) == clicks.n_users and tiers.min() >= 0


def test_js_divergence_extremes():
    assert mean_js_divergence(np.array([[0.5, 0.5, 0], [0.5, 0.5, 0]])) == pytest.approx(0.0)
    assert mean_js_divergence(np.array([[1.0, 0], [0, 1.0]])) == pytest.approx(1.0)
    assert mean_js_divergence(np.array([[1.0, 0], [0, 0]])) == 0.0, "an empty tier is left out"


def test_heterogeneity_falls_with_alpha_on_ml100k(ml100k):
    """RF²'s premise on the real data: smaller α, more different tiers; Random is near zero."""
    clicks = click_view(ml100k.interactions, 5).positives()
    seeds = range(5)
    def measure(alpha):
        values = []
        for seed in seeds:
            rng = np.random.default_rng(seed)
            tiers = random_tier_mapping(clicks.n_users, EQUAL, rng) if alpha is None else \
                dirichlet_tier_mapping(clicks, EQUAL, alpha, rng)
            values.append(tier_heterogeneity(clicks, tiers, 3, top_items=100))
        return float(np.mean(values))
    ordered = [measure(PRESET_ALPHA[name]) for name in ("hetero-vhigh", "hetero-high", "hetero-mid", "hetero-low", "hetero-vlow")]
    assert all(a > b for a, b in zip(ordered, ordered[1:])), ordered
    random_value = measure(None)
    assert random_value < 0.015 and random_value < ordered[0] / 5, (random_value, ordered)
