"""A small click world for the click-model tests: clicks follow (user gender) × (item genre 0)
and user activity, with MovieLens-like timestamp ties."""

import numpy as np

from cluster.fl.families.click.features import build_click_features, rows_by_user
from cluster.data.splits import temporal_holdout
from cluster.data.types import CategoricalFeatures, Dataset, Interactions, ItemFeatures
from cluster.data.views import click_view


def toy_click_world(seed: int, counts: list[int], n_items: int = 60, n_genres: int = 5):
    """A small world whose clicks follow (user gender) × (item genre 0) and user activity."""
    rng = np.random.default_rng(seed)
    n_users = len(counts)
    users = np.repeat(np.arange(n_users), counts).astype(np.int32)
    items = np.concatenate([rng.choice(n_items, size=n, replace=False) for n in counts]).astype(np.int32)
    genres = rng.random((n_items, n_genres)) < 0.35
    gender, age = rng.integers(0, 2, n_users), rng.integers(0, 3, n_users)
    taste = np.where(genres[items, 0] == (gender[users] == 1), 1.5, -1.5) + rng.normal(0, 0.5, n_users)[users]
    clicked = rng.random(len(users)) < 1 / (1 + np.exp(-taste))
    ratings = np.where(clicked, 5, rng.integers(1, 5, len(users))).astype(np.float32)
    timestamps = rng.integers(0, 50, len(users)).astype(np.int64)  # many ties, as in MovieLens
    inter = Interactions(users, items, ratings, timestamps, n_users, n_items)
    cats = CategoricalFeatures(
        codes={"gender": gender.astype(np.int32), "age": age.astype(np.int32)},
        vocab={"gender": ["F", "M"], "age": ["a", "b", "c"]},
    )
    item_features = ItemFeatures(genres, [f"g{k}" for k in range(n_genres)], genres.argmax(1).astype(np.int32),
                                 [f"g{k}" for k in range(n_genres)], np.array([str(i) for i in range(n_items)], dtype=object))
    dataset = Dataset("toy", inter, np.arange(n_users), np.arange(n_items), cats, item_features)
    view = click_view(inter, 5.0)
    holdout = temporal_holdout(view.interactions, 0.2)
    features = build_click_features(dataset, view, holdout.train_rows)
    indptr, rows = rows_by_user(features, holdout.train_rows, n_users)
    return view, holdout, features, indptr, rows
