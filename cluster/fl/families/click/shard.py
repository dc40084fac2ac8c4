"""The clients of one click-model worker: only their own feature rows, click histories and user
codes (other users' rows are not in the file), their train rows by client and their held-out rows.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np

from cluster.data.click_features import (
    ClickFeatures,
    ranges,
    rows_by_user,
    select_clients,
)
from cluster.storage import Storage


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
        user=features.user[keep], item=features.item[keep], label=features.label[keep], dense=features.dense[keep],
        prior_clicks=features.prior_clicks[keep], click_indptr=click_indptr, click_items=click_items,
        user_cats=user_cats, cat_names=features.cat_names, cat_sizes=features.cat_sizes, item_genres=features.item_genres,
    )
    return restricted, keep


@dataclass(frozen=True)
class ClickShard:
    """clients (C,) ascending global ids; client c's train rows of ``features`` are
    ``train_rows[train_indptr[c]:train_indptr[c+1]]``; test_rows: its clients' held-out rows."""

    features: ClickFeatures
    clients: np.ndarray
    train_indptr: np.ndarray
    train_rows: np.ndarray
    test_rows: np.ndarray

    @classmethod
    def build(cls, features: ClickFeatures, train_rows: np.ndarray, test_rows: np.ndarray, clients: np.ndarray) -> "ClickShard":
        clients = np.sort(np.asarray(clients, dtype=np.int64))
        local, keep = restrict_features(features, clients)
        position = np.full(len(features.user), -1, np.int64)
        position[keep] = np.arange(len(keep))
        mine = lambda rows: position[rows][position[rows] >= 0]  # noqa: E731
        by_user_indptr, by_user_rows = rows_by_user(local, mine(train_rows), len(local.click_indptr) - 1)
        indptr, rows = select_clients(by_user_indptr, by_user_rows, clients)
        return cls(local, clients, indptr, rows, np.sort(mine(test_rows)))

    def client_rows(self, rows_of_clients: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """CSR (indptr, rows) of the clients at shard positions ``rows_of_clients``."""
        return select_clients(self.train_indptr, self.train_rows, rows_of_clients)

    def save(self, storage: Storage, name: str) -> None:
        arrays = {f"f.{f.name}": np.asarray(getattr(self.features, f.name)) for f in fields(ClickFeatures)}
        storage.write_npz(name, clients=self.clients, train_indptr=self.train_indptr, train_rows=self.train_rows,
                          test_rows=self.test_rows, **arrays)

    @classmethod
    def load(cls, storage: Storage, name: str) -> "ClickShard":
        f = storage.read_npz(name)
        values = {field.name: f[f"f.{field.name}"] for field in fields(ClickFeatures)}
        values["cat_names"] = tuple(str(n) for n in values["cat_names"])
        values["cat_sizes"] = tuple(int(n) for n in values["cat_sizes"])
        return cls(ClickFeatures(**values), f["clients"], f["train_indptr"], f["train_rows"], f["test_rows"])
