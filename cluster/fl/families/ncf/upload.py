"""What an NCF client uploads: the item rows ``fl.upload`` sends (the rows it touched — its
positives and this round's sampled negatives —, every row, or the touched rows among fixed decoys;
``upload_rows.py``) and, under a compressing tier-aware optimization (RF² Table 1), every tensor
it sends — each dense weight, its item rows, and under Cali3F its cluster-model pass and
user-vector change — pruned or quantized with its tier's level.

As for click models (``families/click/upload.compress_upload``), each client draws from its own stream
(seed, round, client id), so the result does not depend on which worker holds it.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from cluster.fl.compression import compress_values, is_neutral
from cluster.fl.upload_rows import fill_decoys, sent_rows
from cluster.rng import stream
from cluster.fl.types import ClientUpdate
from configs.fl_schema import UploadConfig


def widen_ncf_upload(
    result: ClientUpdate, upload: UploadConfig, n_items: int, seed: int, round_index: int
) -> ClientUpdate:
    """``result`` with each client's item rows widened to what ``upload`` sends: every item
    (dense: the new rows carry a zero update) or its touched rows plus its decoys (padded: the
    decoys carry zero-mean noise, ``upload_rows.fill_decoys``). Rows stay grouped by client, items
    ascending; ``touched_rows`` keeps what the client's training touched."""
    if upload.kind == "touched" or len(result.clients) == 0:
        return result
    counts = np.bincount(result.row_owner, minlength=len(result.clients))
    starts = np.r_[0, np.cumsum(counts)]
    ids, owners = [], []
    deltas: dict[str, list[np.ndarray]] = {t: [] for t in result.item_deltas}
    for c, client in enumerate(result.clients):
        own = result.item_ids[starts[c] : starts[c + 1]]
        sent = sent_rows(upload, {"item": own}, {"item": n_items}, seed, int(client))
        rows = sent.rows["item"]
        real = np.searchsorted(rows, own)
        rng = stream(seed, "upload-decoy-values", round_index, int(client))
        for table, values in result.item_deltas.items():
            wide = np.zeros((len(rows), values.shape[1]), values.dtype)
            wide[real] = values[starts[c] : starts[c + 1]]
            fill_decoys(wide, real, np.searchsorted(rows, sent.decoys["item"]), rng)
            deltas[table].append(wide)
        ids.append(rows)
        owners.append(np.full(len(rows), c, np.int32))
    return replace(
        result,
        item_ids=np.concatenate(ids).astype(np.int64),
        row_owner=np.concatenate(owners),
        item_deltas={t: np.concatenate(v) for t, v in deltas.items()},
    )


def compress_ncf_upload(
    result: ClientUpdate, kind: str, levels: np.ndarray, seed: int, round_index: int, rescale_pruned: bool = False
) -> ClientUpdate:
    """``result`` as the server reconstructs it after each client's compression at ``levels[c]``
    (C,); ``kind`` other than prune / quant / quants: returned as is (sent as float32)."""
    if kind not in ("prune", "quant", "quants"):
        return result
    item = {t: v.copy() for t, v in result.item_deltas.items()}
    per_client = {"dense": {n: v.copy() for n, v in result.dense_deltas.items()}}
    for field in ("cluster_dense_deltas", "user_deltas"):
        if getattr(result, field) is not None:
            per_client[field] = {n: v.copy() for n, v in getattr(result, field).items()}
    row_end = np.cumsum(np.bincount(result.row_owner, minlength=len(result.clients)))
    row_start = row_end - np.bincount(result.row_owner, minlength=len(result.clients))
    for c, client in enumerate(result.clients):
        level = float(levels[c])
        if is_neutral(kind, level):
            continue
        rng = stream(seed, "compress", round_index, int(client))
        rows = slice(row_start[c], row_end[c])  # a client's rows are contiguous (grouped by owner)
        for table in item:
            item[table][rows] = compress_values(item[table][rows], kind, level, rng, rescale_pruned)
        for tensors in per_client.values():
            for name in tensors:
                tensors[name][c] = compress_values(tensors[name][c], kind, level, rng, rescale_pruned)
    return replace(
        result,
        item_deltas=item,
        dense_deltas=per_client["dense"],
        cluster_dense_deltas=per_client.get("cluster_dense_deltas"),
        user_deltas=per_client.get("user_deltas"),
    )
