"""One client's samples for the hand-written kernel (``kernel.py``), unpadded: its rows in CSR
order, their history as flat (sample, clicked item) pairs in sample order, and the plans that
add its per-sample gradients into embedding rows. Everything here is a function of the client's
own rows, so its arithmetic is too."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from cluster.fl.families.click.features import ClickFeatures
from cluster.fl.families.click.layers import RowSums, Segments
from cluster.fl.families.click.model import ClickSpec


@dataclass(frozen=True)
class ClientSamples:
    """n samples and P history pairs of one client: cats (n, n_cats) int64 user codes and
    cat_onehot[k] (n, vocabulary k) float32 the one-hot rows of cats[:, k]; item (n,) int64;
    genres (n, n_genres) float32; dense (n, n_dense) float32; labels (n,) float32; inv_count
    (n, 1) float32 1 / max(1, the sample's history length); history (P,) int64 the clicked item
    of each pair and pair_sample (P,) its sample; pooling adds pairs into their samples;
    item_rows adds rows indexed by [item, history] into the item table."""

    cats: np.ndarray
    cat_onehot: tuple[np.ndarray, ...]
    item: np.ndarray
    genres: np.ndarray
    dense: np.ndarray
    labels: np.ndarray
    inv_count: np.ndarray
    history: np.ndarray
    pair_sample: np.ndarray
    pooling: Segments
    item_rows: RowSums

    @property
    def n(self) -> int:
        return len(self.labels)


def client_samples(
    spec: ClickSpec, features: ClickFeatures, indptr: np.ndarray, rows: np.ndarray
) -> list[ClientSamples]:
    """Every client of the CSR (indptr (C + 1,), rows), each its rows in CSR order; every client
    needs a row. Features are gathered for all rows at once and sliced per client."""
    n_rows = np.diff(indptr)
    if (n_rows == 0).any():
        raise ValueError("every trained client needs at least one sample")
    item = features.item[rows].astype(np.int64)
    cats = features.user_cats[features.user[rows]].astype(np.int64)
    # The user-code tables are small (gender, age bucket, occupation, zip prefix): a one-hot
    # product adds a client's rows into them faster than sorting its codes would.
    onehot = [(cats[:, k, None] == np.arange(size)).astype(np.float32) for k, (_, size) in enumerate(spec.cats)]
    genres, dense, labels = features.item_genres[item], features.dense[rows], features.label[rows]
    pair_row, history, lengths = features.history(rows, spec.history_len)
    inv_count = (1.0 / np.maximum(lengths, 1)).astype(np.float32)[:, None]
    pair_at = np.r_[0, np.cumsum(lengths)][indptr]
    item_rows = _item_rows(item, history, indptr, pair_at)
    out = []
    for c, (a, b) in enumerate(zip(indptr[:-1], indptr[1:])):
        pa, pb = pair_at[c], pair_at[c + 1]
        out.append(
            ClientSamples(
                cats=cats[a:b],
                cat_onehot=tuple(table[a:b] for table in onehot),
                item=item[a:b],
                genres=genres[a:b],
                dense=dense[a:b],
                labels=labels[a:b],
                inv_count=inv_count[a:b],
                history=history[pa:pb],
                pair_sample=pair_row[pa:pb] - a,
                pooling=Segments.of_lengths(lengths[a:b]),
                item_rows=item_rows[c],
            )
        )
    return out


def _item_rows(item: np.ndarray, history: np.ndarray, indptr: np.ndarray, pair_at: np.ndarray) -> list[RowSums]:
    """Each client's ``RowSums`` of its ids [its items, its history items], from one stable sort
    of every client's (client, id): sorted by client first, a client's entries keep their own
    range, in the order a stable sort of its ids alone would give."""
    n_clients = len(indptr) - 1
    n_items, n_pairs = np.diff(indptr), np.diff(pair_at)
    block_at: np.ndarray = np.r_[0, np.cumsum(n_items + n_pairs)]
    ids = np.empty(block_at[-1], np.int64)
    ids[np.repeat(block_at[:-1] - indptr[:-1], n_items) + np.arange(len(item))] = item
    ids[np.repeat(block_at[:-1] + n_items - pair_at[:-1], n_pairs) + np.arange(len(history))] = history
    owner = np.repeat(np.arange(n_clients), n_items + n_pairs)
    order: np.ndarray = np.lexsort((ids, owner))  # stable
    sorted_ids, sorted_owner = ids[order], owner[order]
    starts = np.flatnonzero(np.r_[True, (sorted_ids[1:] != sorted_ids[:-1]) | (sorted_owner[1:] != sorted_owner[:-1])])
    first_start = np.searchsorted(starts, block_at)
    out = []
    for c in range(n_clients):
        lo, own = block_at[c], starts[first_start[c] : first_start[c + 1]]
        out.append(RowSums(order[lo : block_at[c + 1]] - lo, own - lo, sorted_ids[own]))
    return out
