import numpy as np

from configs.schema import SyntheticConfig
from cluster.data.synthetic import generate_synthetic

SMALL = SyntheticConfig(n_users=1500, n_items=800, n_groups=8, target_interactions=40_000)


def test_deterministic_by_seed():
    a, b, c = generate_synthetic(SMALL, 3), generate_synthetic(SMALL, 3), generate_synthetic(SMALL, 4)
    for name in ("users", "items", "ratings", "timestamps"):
        assert np.array_equal(getattr(a.interactions, name), getattr(b.interactions, name))
    assert not np.array_equal(a.interactions.items, c.interactions.items)
    for key in a.user_features.codes:
        assert np.array_equal(a.user_features.codes[key], b.user_features.codes[key])


def test_shape_and_validity():
    data = generate_synthetic(SMALL, 0)
    inter = data.interactions
    assert (data.n_users, data.n_items) == (1500, 800)
    assert abs(len(inter) - 40_000) / 40_000 < 0.02
    per_user = np.bincount(inter.users, minlength=data.n_users)
    assert per_user.min() >= SMALL.min_user_interactions
    keys = inter.users.astype(np.int64) * data.n_items + inter.items
    assert len(np.unique(keys)) == len(keys), "no user rates the same item twice"
    assert set(np.unique(inter.ratings).tolist()) <= {1, 2, 3, 4, 5}
    assert len(data.item_features.group_names) == 8 and np.bincount(data.item_features.group).min() > 0
    assert set(data.user_features.names()) == {"gender", "age", "occupation", "region"}


def test_heavy_tails():
    data = generate_synthetic(SMALL, 0)
    per_user = np.bincount(data.interactions.users)
    assert per_user.max() > 8 * np.median(per_user), "user activity should be heavy-tailed"
    popularity = np.sort(data.interactions.item_counts())[::-1]
    top_share = popularity[: len(popularity) // 10].sum() / popularity.sum()
    assert top_share > 0.35, f"top 10% of items should hold a large share of interactions, got {top_share:.2f}"


def test_demographics_shape_taste():
    """Users who share demographics prefer similar item groups (ClusSamp relies on it)."""
    data = generate_synthetic(SMALL, 0)
    inter, groups = data.interactions, data.item_features.group
    occupation = data.user_features.codes["occupation"]
    hist = np.zeros((21, 8))
    np.add.at(hist, (occupation[inter.users], groups[inter.items]), 1)
    hist /= hist.sum(axis=1, keepdims=True)
    overall = np.bincount(groups[inter.items], minlength=8) / len(inter)
    assert np.abs(hist - overall).max() > 0.03


def test_timestamps_are_per_user_increasing_in_draw_order():
    data = generate_synthetic(SMALL, 1)
    inter = data.interactions
    same_user = inter.users[1:] == inter.users[:-1]
    assert (np.diff(inter.timestamps)[same_user] >= 0).all()
