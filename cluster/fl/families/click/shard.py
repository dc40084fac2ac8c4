"""The clients of one click-model worker as a ``ClientShard``: only their own feature rows, click
histories and user codes (other users' rows are not in the file), their train rows by client and
their held-out rows.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import fields
from typing import Any

import numpy as np

from cluster.arrays import select_clients
from cluster.fl.families.click.features import (
    ClickFeatures,
    ranges,
    rows_by_user,
)
from cluster.fl.families.click.setup import ClickSetup
from cluster.fl.shard import ClientShard


def restrict_features(features: ClickFeatures, users: np.ndarray) -> tuple[ClickFeatures, np.ndarray]:
    """The features of ``users`` alone, and the original index of each kept row (ascending).
    User ids stay global; every other user has no rows, no clicks and zeroed codes."""
    keep = np.flatnonzero(np.isin(features.user, users))
    n_users = len(features.click_indptr) - 1
    lengths = np.zeros(n_users, np.int64)
    lengths[users] = np.diff(features.click_indptr)[users]
    click_indptr = np.r_[0, np.cumsum(lengths)].astype(np.int64)
    click_items = features.click_items[ranges(features.click_indptr[users], lengths[users])]
    user_cats = np.zeros_like(features.user_cats)
    user_cats[users] = features.user_cats[users]
    restricted = ClickFeatures(
        user=features.user[keep],
        item=features.item[keep],
        label=features.label[keep],
        dense=features.dense[keep],
        prior_clicks=features.prior_clicks[keep],
        click_indptr=click_indptr,
        click_items=click_items,
        user_cats=user_cats,
        cat_names=features.cat_names,
        cat_sizes=features.cat_sizes,
        item_genres=features.item_genres,
    )
    return restricted, keep


def click_shard(
    features: ClickFeatures, train_rows: np.ndarray, test_rows: np.ndarray, clients: np.ndarray
) -> ClientShard:
    """The shard of ``clients``: its examples are rows of their own features (``data``, see
    ``shard_features``), its test ``rows`` their held-out ones; no private table."""
    clients = np.sort(np.asarray(clients, dtype=np.int64))
    local, keep = restrict_features(features, clients)
    position = np.full(len(features.user), -1, np.int64)
    position[keep] = np.arange(len(keep))
    mine = lambda rows: position[rows][position[rows] >= 0]  # noqa: E731
    by_user_indptr, by_user_rows = rows_by_user(local, mine(train_rows), len(local.click_indptr) - 1)
    indptr, rows = select_clients(by_user_indptr, by_user_rows, clients)
    data = {f.name: np.asarray(getattr(local, f.name)) for f in fields(ClickFeatures)}
    return ClientShard(clients, indptr, rows, test={"rows": np.sort(mine(test_rows))}, data=data)


def shard_features(shard: ClientShard) -> ClickFeatures:
    """The feature table a click shard's examples index."""
    # Arrays as stored, but for the names and sizes of the categorical columns, kept as tuples.
    values: dict[str, Any] = dict(shard.data)
    values["cat_names"] = tuple(str(n) for n in values["cat_names"])
    values["cat_sizes"] = tuple(int(n) for n in values["cat_sizes"])
    return ClickFeatures(**values)


def click_shards(setup: ClickSetup, worker_of_user: np.ndarray, n_workers: int) -> Iterator[ClientShard]:
    """Each worker's clients with only their own feature rows (see ``click_shard``)."""
    for worker in range(n_workers):
        yield click_shard(setup.features, setup.train_rows, setup.test_rows, np.flatnonzero(worker_of_user == worker))
