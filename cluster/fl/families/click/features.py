"""Per-sample features for RF²'s click task (DLRM / DIN on MovieLens): every row of a click view
(rated item, label = clicked) gets the user's categorical codes, the user's click history, the
item id, the item's genres and two dense numbers.

Decisions (the data has no dense features and no explicit history, so both are derived):
- **History** of a row = the items the same user clicked in the *train* part strictly before that
  row in the user's chronological order (timestamp, ties in file order: ``Interactions.user_order``).
  Chronological, so a train sample never sees its own label or a later click; test rows (each
  user's latest fraction) therefore see all of the user's train clicks and never another test
  label. Held compactly as each user's train-click sequence plus the row's prefix length; a batch
  asks for the most recent ``max_len`` as flat (row, item) pairs (:meth:`ClickFeatures.history`),
  so a model's work follows the real history lengths, not a padded rectangle.
- **Dense features** (DLRM's bottom MLP, DIN's MLP input): ``log1p(prior clicks) / log1p(100)``
  (activity, ≈ [0, 1] for up to 100 clicks, growing slowly beyond) and the smoothed prior click
  rate ``(prior clicks + 1) / (prior train rows + 5)`` (≈ the global 1-in-5 rate when nothing is
  known). Both use only the user's own earlier train rows, as a phone would know them.
- **No user id** is a model input (privacy); ``user`` only says which client owns a row.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from cluster.arrays import ranges
from cluster.data.types import Dataset
from cluster.data.views import FeedbackView

DENSE_FEATURES = ("log_prior_clicks", "prior_click_rate")
_COUNT_SCALE = math.log1p(100.0)
_RATE_PRIOR = (1.0, 5.0)  # (pseudo-clicks, pseudo-rows): a 1-in-5 prior, MovieLens's 5-star share


@dataclass(frozen=True)
class ClickFeatures:
    """Features of the n rows of a click view, in the view's row order.

    user, item: (n,) int32; label: (n,) float32 in {0, 1}; dense: (n, len(DENSE_FEATURES)) float32;
    prior_clicks: (n,) int32 train clicks of the row's user before the row;
    click_indptr: (n_users + 1,), click_items: (n_train_clicks,) int32 — user u's train clicks,
    oldest first, are ``click_items[click_indptr[u]:click_indptr[u+1]]``;
    user_cats: (n_users, len(cat_names)) int32 codes with vocabulary sizes cat_sizes;
    item_genres: (n_items, n_genres) float32 multi-hot divided by the item's genre count (a mean
    over its genres; all zero for an item without genre).
    """

    user: np.ndarray
    item: np.ndarray
    label: np.ndarray
    dense: np.ndarray
    prior_clicks: np.ndarray
    click_indptr: np.ndarray
    click_items: np.ndarray
    user_cats: np.ndarray
    cat_names: tuple[str, ...]
    cat_sizes: tuple[int, ...]
    item_genres: np.ndarray

    @property
    def n_items(self) -> int:
        return int(self.item_genres.shape[0])

    @property
    def n_genres(self) -> int:
        return int(self.item_genres.shape[1])

    def history(self, rows: np.ndarray, max_len: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Each row's ``max_len`` most recent earlier clicks, flat: (pair_row (p,) index into
        ``rows``, pair_item (p,) int64, lengths (len(rows),) int64), pairs in row order and,
        within a row, oldest first."""
        lengths = np.minimum(self.prior_clicks[rows], max_len).astype(np.int64)
        starts = self.click_indptr[self.user[rows]] + self.prior_clicks[rows] - lengths
        pair_row = np.repeat(np.arange(len(rows)), lengths)
        return pair_row, self.click_items[ranges(starts, lengths)].astype(np.int64), lengths


def build_click_features(dataset: Dataset, view: FeedbackView, train_rows: np.ndarray) -> ClickFeatures:
    """Features of every row of ``view`` (a click view of ``dataset``); ``train_rows`` index the
    view's rows whose labels may feed histories and dense features (the temporal hold-out's train)."""
    inter = view.interactions
    n = len(inter)
    indptr, order = inter.user_order()
    counts = np.diff(indptr)
    is_train = np.zeros(n, dtype=bool)
    is_train[train_rows] = True
    train_sorted = is_train[order]
    click_sorted = train_sorted & (view.labels[order] > 0)

    user_start = np.repeat(indptr[:-1], counts)
    prior_clicks, prior_rows = np.empty(n, np.int64), np.empty(n, np.int64)
    prior_clicks[order] = _exclusive_within(click_sorted, user_start)
    prior_rows[order] = _exclusive_within(train_sorted, user_start)

    clicked_users = inter.users[order][click_sorted]
    click_indptr = np.zeros(inter.n_users + 1, dtype=np.int64)
    np.cumsum(np.bincount(clicked_users, minlength=inter.n_users), out=click_indptr[1:])

    pseudo_clicks, pseudo_rows = _RATE_PRIOR
    dense = np.stack(
        [np.log1p(prior_clicks) / _COUNT_SCALE, (prior_clicks + pseudo_clicks) / (prior_rows + pseudo_rows)], axis=1
    ).astype(np.float32)
    cats = dataset.user_features
    genres = dataset.item_features.genres.astype(np.float32)
    return ClickFeatures(
        user=inter.users.astype(np.int32),
        item=inter.items.astype(np.int32),
        label=view.labels.astype(np.float32),
        dense=dense,
        prior_clicks=prior_clicks.astype(np.int32),
        click_indptr=click_indptr,
        click_items=inter.items[order][click_sorted].astype(np.int32),
        user_cats=np.stack([cats.codes[name] for name in cats.names()], axis=1).astype(np.int32),
        cat_names=tuple(cats.names()),
        cat_sizes=tuple(len(cats.vocab[name]) for name in cats.names()),
        item_genres=genres / np.maximum(genres.sum(axis=1, keepdims=True), 1.0),
    )


def _exclusive_within(flags: np.ndarray, segment_start: np.ndarray) -> np.ndarray:
    """For rows sorted by segment: how many earlier rows of the same segment are flagged."""
    before = np.r_[0, np.cumsum(flags, dtype=np.int64)]
    return before[:-1] - before[segment_start]


def rows_by_user(features: ClickFeatures, rows: np.ndarray, n_users: int) -> tuple[np.ndarray, np.ndarray]:
    """CSR of ``rows`` by owning user: (indptr (n_users + 1,), rows sorted by user, then row)."""
    rows = np.asarray(rows, dtype=np.int64)
    ordered = rows[np.lexsort((rows, features.user[rows]))]
    indptr = np.zeros(n_users + 1, dtype=np.int64)
    np.cumsum(np.bincount(features.user[ordered], minlength=n_users), out=indptr[1:])
    return indptr, ordered
