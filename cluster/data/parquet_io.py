"""A :class:`Dataset` as three Parquet files, written atomically.

interactions.parquet (user, item, rating, timestamp), users.parquet (original id + one
dictionary-encoded column per categorical feature), items.parquet (original id, title, group,
one bool column per genre). Dictionary columns keep codes and vocabularies exactly.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from cluster.data.types import CategoricalFeatures, Dataset, Interactions, ItemFeatures
from cluster.storage import Storage, as_storage

_GENRE_PREFIX = "genre:"


def write_table_atomic(table: pa.Table, target: Storage | Path) -> None:
    """``target``: the file's location in the storage (or a local path)."""
    as_storage(target).write_parquet("", table)


def _dictionary(codes: np.ndarray, vocab: list[str]) -> pa.DictionaryArray:
    return pa.DictionaryArray.from_arrays(pa.array(codes, pa.int32()), pa.array(vocab, pa.string()))


def dataset_tables(dataset: Dataset) -> dict[str, pa.Table]:
    inter = dataset.interactions
    interactions = pa.table(
        {"user": inter.users, "item": inter.items, "rating": inter.ratings, "timestamp": inter.timestamps},
        metadata={"name": dataset.name, "n_users": str(inter.n_users), "n_items": str(inter.n_items)},
    )
    user_columns = {"user_id": pa.array(dataset.user_ids, pa.int64())}
    for name in dataset.user_features.names():
        user_columns[name] = _dictionary(dataset.user_features.codes[name], dataset.user_features.vocab[name])
    features = dataset.item_features
    item_columns = {
        "item_id": pa.array(dataset.item_ids, pa.int64()),
        "title": pa.array(features.titles.tolist(), pa.string()),
        "group": _dictionary(features.group, features.group_names),
    }
    for index, genre in enumerate(features.genre_names):
        item_columns[_GENRE_PREFIX + genre] = pa.array(features.genres[:, index], pa.bool_())
    return {
        "interactions": interactions,
        "users": pa.table(user_columns),
        "items": pa.table(item_columns, metadata={"genres": json.dumps(features.genre_names)}),
    }


def save_dataset(dataset: Dataset, folder: Path) -> None:
    """Write the three tables into ``folder`` as one unit: a half-written folder never appears."""
    folder = Path(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
    try:
        for name, table in dataset_tables(dataset).items():
            pq.write_table(table, staging / f"{name}.parquet")
        try:
            os.rename(staging, folder)
        except OSError:
            if not (folder / "items.parquet").exists():
                raise
            # Another process finished the same cache entry first; its copy is identical.
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)


def _codes_and_vocab(column: pa.ChunkedArray) -> tuple[np.ndarray, list[str]]:
    combined = column.combine_chunks()
    if not pa.types.is_dictionary(combined.type):
        combined = combined.dictionary_encode()
    return combined.indices.to_numpy(zero_copy_only=False).astype(np.int32), combined.dictionary.to_pylist()


_INTERACTION_DTYPES = {"user": np.int32, "item": np.int32, "rating": np.float32, "timestamp": np.int64}


def _load_interactions(path: Path) -> Interactions:
    """One column at a time, each Arrow buffer let go once it is a numpy array: at 25M rows,
    holding the whole table beside its numpy copy doubled the peak."""
    parquet = pq.ParquetFile(path)
    meta = {k.decode(): v.decode() for k, v in (parquet.schema_arrow.metadata or {}).items()}
    columns = {}
    for name, dtype in _INTERACTION_DTYPES.items():
        column = parquet.read(columns=[name]).column(0)
        columns[name] = column.to_numpy().astype(dtype, copy=False)
        del column
    pa.default_memory_pool().release_unused()
    return Interactions(
        columns["user"],
        columns["item"],
        columns["rating"],
        columns["timestamp"],
        n_users=int(meta["n_users"]),
        n_items=int(meta["n_items"]),
    )


def load_dataset(folder: Path) -> Dataset:
    folder = Path(folder)
    inter = _load_interactions(folder / "interactions.parquet")
    users = pq.read_table(folder / "users.parquet").unify_dictionaries()
    codes, vocab = {}, {}
    for name in users.column_names[1:]:
        codes[name], vocab[name] = _codes_and_vocab(users.column(name))
    items = pq.read_table(folder / "items.parquet").unify_dictionaries()
    genre_names = json.loads(items.schema.metadata[b"genres"].decode())
    genres = np.zeros((items.num_rows, len(genre_names)), dtype=bool)
    for index, genre in enumerate(genre_names):
        genres[:, index] = items.column(_GENRE_PREFIX + genre).to_numpy(zero_copy_only=False)
    group, group_names = _codes_and_vocab(items.column("group"))
    return Dataset(
        name=pq.read_schema(folder / "interactions.parquet").metadata[b"name"].decode(),
        interactions=inter,
        user_ids=users.column("user_id").to_numpy(),
        item_ids=items.column("item_id").to_numpy(),
        user_features=CategoricalFeatures(codes=codes, vocab=vocab),
        item_features=ItemFeatures(
            genres=genres,
            genre_names=genre_names,
            group=group,
            group_names=group_names,
            titles=np.asarray(items.column("title").to_pylist(), dtype=object),
        ),
    )
