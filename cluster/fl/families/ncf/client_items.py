"""A batch's (client, item) pairs as flat keys ``row * n_items + item``, ``row`` the client's
index in the batch, and their distinct pairs.

The distinct pairs come from a dense table over every (row, item) pair when that table is small
next to the batch's keys (a scatter, a scan and a gather, far faster than a sort), else from a
sort, which costs the same whatever the item count. The answer is exact either way, so which
one a batch takes never changes a result: a client's arithmetic still does not depend on the
other clients of its batch."""

from __future__ import annotations

import numpy as np

# Table cells allowed per key before a sort is cheaper: zeroing and scanning a cell costs a
# small fraction of sorting a key. The tables are then at most this many bytes and int32 per
# key of the batch, whatever the number of clients and items.
CELLS_PER_KEY = 16
# Tables this small are always dense, however few the keys.
SMALL_TABLE = 1 << 16


def dense_fits(n_rows: int, n_items: int, n_keys: int) -> bool:
    """Whether a batch of ``n_rows`` clients and ``n_keys`` keys takes a dense (row, item) table."""
    return n_rows * n_items <= max(CELLS_PER_KEY * n_keys, SMALL_TABLE)


def distinct_pairs(n_rows: int, n_items: int, keys: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The distinct pairs among ``keys``, ordered by row then item, as (row, item) (int64 each),
    and each key's index among them (integers)."""
    keys = np.asarray(keys, dtype=np.int64)
    if dense_fits(n_rows, n_items, len(keys)):
        marked = np.zeros(n_rows * n_items, dtype=bool)
        marked[keys] = True
        distinct = np.flatnonzero(marked)
        # Only the cells of marked pairs are ever read back, so the rest may stay unset.
        index = np.empty(n_rows * n_items, dtype=np.int32 if len(keys) < 2**31 else np.int64)
        index[distinct] = np.arange(len(distinct), dtype=index.dtype)
        row = distinct // n_items  # faster than divmod, which takes a remainder
        return row, distinct - row * n_items, np.take(index, keys)
    # Distinct values and each key's index among them are the same whatever order a sort leaves
    # equal keys in, so the fastest sort will do.
    order = np.argsort(keys)
    ordered = keys[order]
    first = np.empty(len(keys), dtype=bool)
    first[:1] = True
    np.not_equal(ordered[1:], ordered[:-1], out=first[1:])
    index = np.empty(len(keys), dtype=np.int64)
    index[order] = np.cumsum(first) - 1
    distinct = ordered[first]
    row = distinct // n_items
    return row, distinct - row * n_items, index
