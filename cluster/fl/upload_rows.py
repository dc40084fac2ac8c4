"""Which embedding rows a client sends under ``fl.upload`` (touched, dense, padded) and what its
decoy rows carry. Pure functions over one client's row ids; ``families/click/upload.py`` applies them.

Decoys come from one fixed order of each table per client (its own stream: seed, client), not a
fresh draw per round: a set that changed every round would give the real rows away to anyone
intersecting two rounds' sets.
Their values are fresh each round: N(0, σ²) with σ the spread of the client's real rows of that
table, so E[decoy] = 0 — the true update of a row the client never read — and FedAvg stays
unbiased, paying only variance.

This is obfuscation, not privacy: the order is drawn from what the server knows (seed, client id),
and a real row's update persists across rounds while a decoy's is fresh noise, so a curious server
finds the real rows (``tests/unit/test_padded_upload_inference.py`` runs both attacks).
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass

import numpy as np

from cluster.rng import stream
from configs.fl_schema import UploadConfig


@dataclass(frozen=True)
class SentRows:
    """Per embedding table: the sorted row ids sent, and the decoys among them (empty unless padded)."""

    rows: dict[str, np.ndarray]
    decoys: dict[str, np.ndarray]


def decoy_count(n_touched, n_rows: int, pad_ratio: float):
    """Decoys for a table of ``n_rows`` where the client touched ``n_touched`` (a count or an
    array of them): ⌈ratio·touched⌉, capped by the rows it did not touch."""
    count = np.minimum(
        np.ceil(np.round(pad_ratio * np.asarray(n_touched, dtype=np.float64), 9)), n_rows - np.asarray(n_touched)
    )
    return int(count) if np.ndim(count) == 0 else count


def sent_rows(
    upload: UploadConfig, touched: dict[str, np.ndarray], table_rows: dict[str, int], seed: int, client: int
) -> SentRows:
    """The rows ``client`` sends of each table (``table_rows``: name → row count) given the rows
    its samples read (``touched``)."""
    if upload.kind == "touched":
        return SentRows(touched, {name: np.zeros(0, np.int64) for name in touched})
    if upload.kind == "dense":
        return SentRows(
            {name: np.arange(table_rows[name], dtype=np.int64) for name in touched},
            {name: np.zeros(0, np.int64) for name in touched},
        )
    decoys = {}
    for name, ids in touched.items():
        # One fixed order of the table per client: its decoys are the first untouched rows in it,
        # the same every round even where the touched set moves (an NCF client's negatives).
        order = stream(seed, "upload-decoys", client, zlib.crc32(name.encode())).permutation(table_rows[name])
        untouched = order[~np.isin(order, ids)]
        decoys[name] = np.sort(untouched[: decoy_count(len(ids), table_rows[name], upload.pad_ratio)])
    return SentRows({name: np.union1d(ids, decoys[name]) for name, ids in touched.items()}, decoys)


def sent_row_count(upload: UploadConfig, touched_counts: dict[str, int], table_rows: dict[str, int]) -> int:
    """Rows sent over all tables, without drawing them (the server prices a round before it runs)."""
    if upload.kind == "touched":
        return sum(touched_counts.values())
    if upload.kind == "dense":
        return sum(table_rows[name] for name in touched_counts)
    return sum(n + decoy_count(n, table_rows[name], upload.pad_ratio) for name, n in touched_counts.items())


def fill_decoys(table_delta: np.ndarray, real_rows: np.ndarray, decoys: np.ndarray, rng: np.random.Generator) -> None:
    """Write N(0, σ²) into ``table_delta[decoys]`` (rows, dim), σ the standard deviation of the
    client's real rows, in place."""
    if len(decoys) == 0:
        return
    scale = float(table_delta[real_rows].std()) if len(real_rows) else 0.0
    table_delta[decoys] = rng.normal(0.0, scale, size=(len(decoys), *table_delta.shape[1:])).astype(table_delta.dtype)
