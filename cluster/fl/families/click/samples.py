"""One client's samples for the hand-written kernel (``kernel.py``), unpadded: its rows in CSR
order, their history as flat (sample, clicked item) pairs in sample order over the client's
distinct clicked items, and the plans that add its per-sample gradients into embedding rows.
Everything here is a function of the client's own rows, so its arithmetic is too."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np

from cluster.fl.families.click.features import ClickFeatures
from cluster.fl.families.click.layers import RowSums, Segments
from cluster.fl.families.click.model import ClickSpec


@dataclass(frozen=True)
class ClientSamples:
    """n samples, P history pairs over K distinct clicked items of one client: onehot (n, Σ
    vocabulary sizes) float32 the one-hot rows of its user codes, table after table in
    ``spec.cats`` order; item (n,) int64; genres (n, n_genres) float32; dense (n, n_dense)
    float32; labels (n,) float32; clicks (K,) int64 the distinct history items; pair_sample,
    pair_click (P,) each pair's sample and index into ``clicks``; pair_inv (P,) float32 1 / its
    sample's history length; item_rows adds rows indexed by [item, clicks] into the item table.
    DLRM's pool (n, K) float32 holds each pair's pair_inv at (sample, click), so pool @ rows of
    ``clicks`` is each sample's mean history; DIN's pooling adds pairs into their samples and
    by_click into their clicks."""

    onehot: np.ndarray
    item: np.ndarray
    genres: np.ndarray
    dense: np.ndarray
    labels: np.ndarray
    clicks: np.ndarray
    pair_sample: np.ndarray
    pair_click: np.ndarray
    pair_inv: np.ndarray
    item_rows: RowSums
    pool: Optional[np.ndarray] = None
    pooling: Optional[Segments] = None
    by_click: Optional[RowSums] = None

    @property
    def n(self) -> int:
        return len(self.labels)

    def pool_matrix(self, pair_values: np.ndarray) -> np.ndarray:
        """(n, K): the pairs' values at their (sample, click)."""
        return pool_matrix(self.pair_sample, self.pair_click, pair_values, (self.n, len(self.clicks)))


def pool_matrix(sample: np.ndarray, click: np.ndarray, values: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """(n, K) float32: values (P,) at (sample, click), added where a sample reads an item twice
    (each entry's terms in pair order, in float64, rounded once)."""
    flat = np.bincount(sample * shape[1] + click, weights=values, minlength=shape[0] * shape[1])
    return flat.astype(np.float32).reshape(shape)


def client_samples(
    spec: ClickSpec, features: ClickFeatures, indptr: np.ndarray, rows: np.ndarray
) -> list[ClientSamples]:
    """Every client of the CSR (indptr (C + 1,), rows), each its rows in CSR order; every client
    needs a row. Features are gathered and grouped for all rows at once and sliced per client."""
    n_rows = np.diff(indptr)
    if (n_rows == 0).any():
        raise ValueError("every trained client needs at least one sample")
    n_clients = len(n_rows)
    item = features.item[rows].astype(np.int64)
    codes = features.user_cats[features.user[rows]].astype(np.int64) + np.r_[0, np.cumsum(spec.cat_sizes)[:-1]]
    # The user-code tables are small (gender, age bucket, occupation, zip prefix): one-hot
    # products read and add a client's rows of them faster than gathers and sorts would.
    onehot = np.zeros((len(rows), sum(spec.cat_sizes)), np.float32)
    onehot[np.arange(len(rows))[:, None], codes] = 1
    genres, dense, labels = features.item_genres[item], features.dense[rows], features.label[rows]
    pair_row, history, lengths = features.history(rows, spec.history_len)
    inv_count = (1.0 / np.maximum(lengths, 1)).astype(np.float32)
    pair_at = np.r_[0, np.cumsum(lengths)][indptr]
    pair_owner = np.repeat(np.arange(n_clients), np.diff(pair_at))
    clicks = _Grouped.of(history, pair_owner, n_clients)
    click_at = clicks.group_at
    distinct = clicks.ids
    pair_click = np.empty(len(history), np.int64)
    pair_click[clicks.order] = np.repeat(np.arange(len(clicks.starts)), np.diff(np.r_[clicks.starts, len(history)]))
    pair_click -= click_at[pair_owner]
    pair_sample, pair_inv = pair_row - indptr[pair_owner], inv_count[pair_row]
    n_clicks = np.diff(click_at)
    block_at = indptr + click_at
    row_ids = np.empty(block_at[-1], np.int64)
    row_ids[np.repeat(block_at[:-1] - indptr[:-1], n_rows) + np.arange(len(item))] = item
    row_ids[np.repeat(block_at[:-1] + n_rows - click_at[:-1], n_clicks) + np.arange(len(distinct))] = distinct
    item_rows = _Grouped.of(row_ids, np.repeat(np.arange(n_clients), n_rows + n_clicks), n_clients)
    with_history = np.flatnonzero(lengths)
    history_at = (np.cumsum(lengths) - lengths)[with_history]
    with_history_at = np.searchsorted(with_history, indptr)
    out = []
    for c, (a, b) in enumerate(zip(indptr[:-1], indptr[1:])):
        pa, pb, ka, kb = pair_at[c], pair_at[c + 1], click_at[c], click_at[c + 1]
        own_sample, own_click, own_inv = pair_sample[pa:pb], pair_click[pa:pb], pair_inv[pa:pb]
        kind_fields: dict = {}
        if spec.kind == "dlrm":
            kind_fields["pool"] = pool_matrix(own_sample, own_click, own_inv, (b - a, kb - ka))
        else:
            lo, hi = with_history_at[c], with_history_at[c + 1]
            kind_fields["pooling"] = Segments(with_history[lo:hi] - a, history_at[lo:hi] - pa, b - a)
            kind_fields["by_click"] = clicks.group(c, pa, pb, local=True)
        samples = ClientSamples(
            onehot=onehot[a:b],
            item=item[a:b],
            genres=genres[a:b],
            dense=dense[a:b],
            labels=labels[a:b],
            clicks=distinct[ka:kb],
            pair_sample=own_sample,
            pair_click=own_click,
            pair_inv=own_inv,
            item_rows=item_rows.group(c, block_at[c], block_at[c + 1]),
            **kind_fields,
        )
        out.append(samples)
    return out


@dataclass(frozen=True)
class _Grouped:
    """Entries sorted stably by (group, id), where group g's entries are a consecutive range of
    the input: ``order`` the sort, ``starts`` where each (group, id) run begins, ``group_at``
    (G + 1,) where each group's runs begin among ``starts``. Sorted by group first, a group's
    entries keep their own range, in the order a stable sort of its ids alone would give."""

    order: np.ndarray
    starts: np.ndarray
    group_at: np.ndarray
    ids: np.ndarray

    @classmethod
    def of(cls, ids: np.ndarray, group: np.ndarray, n_groups: int) -> _Grouped:
        # The narrowest unsigned keys: numpy sorts them by radix, several times faster.
        order: np.ndarray = np.lexsort((_narrow(ids), _narrow(group)))
        sorted_ids, sorted_group = ids[order], group[order]
        new_run = np.ones(len(ids), bool)
        new_run[1:] = (sorted_ids[1:] != sorted_ids[:-1]) | (sorted_group[1:] != sorted_group[:-1])
        starts = np.flatnonzero(new_run)
        group_at = np.searchsorted(sorted_group[starts], np.arange(n_groups + 1))
        return cls(order, starts, group_at, sorted_ids[starts])

    def group(self, g: int, lo: int, hi: int, local: bool = False) -> RowSums:
        """Group g's ``RowSums``, its entries the input's [lo, hi), into rows by id (``local``:
        into rows 0, 1, … of its distinct ids in order)."""
        first, last = self.group_at[g], self.group_at[g + 1]
        rows = np.arange(last - first) if local else self.ids[first:last]
        return RowSums(self.order[lo:hi] - lo, self.starts[first:last] - lo, rows)


def _narrow(x: np.ndarray) -> np.ndarray:
    return x.astype(np.min_scalar_type(int(x.max()) if len(x) else 0))
