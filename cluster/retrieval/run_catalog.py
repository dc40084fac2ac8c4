"""Read a trained model's vectors for the retriever: item_embeddings.parquet and
user_queries.parquet from an fl_sim run folder (or any Parquet files with the same columns).

Groups: ``genre`` — the ``group`` column, which fl_sim fills with an item's FIRST listed genre
(MovieLens lists several; the first keeps groups disjoint, as FairSync's exposure accounting
needs, and every item counts for exactly one group); ``popularity`` — equal-size buckets by the
``train_interactions`` column; ``column`` — any column the user names."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa

from cluster.data.errors import DataFormatError
from cluster.data.splits import LeaveOneOut
from cluster.retrieval.catalog import (
    Catalog,
    RequestStream,
    encode_groups,
    popularity_groups,
)
from cluster.storage import Storage, StorageError, as_storage
from configs.schema import RetrievalConfig

ITEM_FILE, USER_FILE = "item_embeddings.parquet", "user_queries.parquet"


def _read(run: Storage, name: str, columns: list[str]) -> pa.Table:
    path = run.describe(name)
    if not run.exists(name):
        hint = " (user query vectors are written by GMF runs only)" if name == USER_FILE else ""
        raise DataFormatError(path, f"missing{hint}")
    try:
        table = run.read_parquet(name)
    except StorageError as exc:
        raise DataFormatError(path, str(exc).removeprefix(path + ": ")) from None
    absent = [c for c in columns if c not in table.column_names]
    if absent:
        raise DataFormatError(path, f"missing column(s) {absent}; it has {table.column_names}")
    return table


def _vectors(table: pa.Table, path: str) -> np.ndarray:
    column = table.column("vector").combine_chunks()
    if not pa.types.is_fixed_size_list(column.type):
        raise DataFormatError(path, f"column 'vector' must be a fixed-size list of floats, not {column.type}")
    values = column.flatten().to_numpy(zero_copy_only=False).astype(np.float32)
    vectors = values.reshape(len(table), column.type.list_size)
    if not np.isfinite(vectors).all():
        raise DataFormatError(path, "column 'vector' holds NaN or infinite values")
    return vectors


def item_groups(cfg: RetrievalConfig, table: pa.Table, path: str) -> tuple[np.ndarray, list[str]]:
    if cfg.group_by == "popularity":
        if "train_interactions" not in table.column_names:
            raise DataFormatError(path, "group_by=popularity needs a 'train_interactions' column")
        return popularity_groups(table.column("train_interactions").to_numpy(), cfg.popularity_buckets)
    name = "group" if cfg.group_by == "genre" else cfg.group_column
    if name not in table.column_names:
        raise DataFormatError(path, f"no column {name!r} to group items by; it has {table.column_names}")
    return encode_groups(table.column(name).to_numpy(zero_copy_only=False))


def load_run_catalog(run_dir: Storage | Path, cfg: RetrievalConfig) -> Catalog:
    """``run_dir``: an fl_sim run folder in any storage."""
    run_dir = as_storage(run_dir)
    item_path, user_path = run_dir.describe(ITEM_FILE), run_dir.describe(USER_FILE)
    items = _read(run_dir, ITEM_FILE, ["item_id", "vector"])
    users = _read(run_dir, USER_FILE, ["user_id", "vector"])
    item_vectors, user_vectors = _vectors(items, item_path), _vectors(users, user_path)
    if item_vectors.shape[1] != user_vectors.shape[1]:
        raise DataFormatError(
            user_path, f"vectors have {user_vectors.shape[1]} values, items have {item_vectors.shape[1]}"
        )
    groups, names = item_groups(cfg, items, item_path)
    return Catalog(
        items.column("item_id").to_numpy().astype(np.int64),
        item_vectors,
        groups,
        names,
        users.column("user_id").to_numpy().astype(np.int64),
        user_vectors,
    )


def heldout_requests(
    loo: LeaveOneOut, dense_user_ids: np.ndarray, catalog: Catalog, rng: np.random.Generator
) -> RequestStream:
    """One request per held-out user, in a random arrival order: the user's leave-one-out test
    item is what it went on to choose; its training items are excluded from its list. Item rows
    of the catalog are the run's dense item ids (fl_sim writes them in that order)."""
    row_of_user = {int(u): r for r, u in enumerate(catalog.user_ids)}
    users = np.array([row_of_user.get(int(dense_user_ids[u]), -1) for u in loo.test_users], dtype=np.int64)
    if (users < 0).any():
        raise ValueError(f"{int((users < 0).sum())} held-out users have no query vector in the catalog")
    order = rng.permutation(len(users))
    indptr, rows = loo.train.user_order()
    seen = [loo.train.items[rows[indptr[u] : indptr[u + 1]]] for u in loo.test_users[order]]
    seen_indptr = np.r_[0, np.cumsum([len(s) for s in seen])].astype(np.int64)
    seen_items = np.concatenate(seen).astype(np.int64) if seen else np.zeros(0, np.int64)
    return RequestStream(users[order], loo.test_items[order].astype(np.int64), seen_indptr, seen_items)
