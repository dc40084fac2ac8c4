"""What an NCF client uploads under a compressing tier-aware optimization (RF² Table 1): every
tensor it sends — each dense weight, its touched rows of each item table, and under Cali3F its
cluster-model pass and user-vector change — pruned or quantized with its tier's level.

As for click models (``click_upload.compress_upload``), each client draws from its own stream
(seed, round, client id), so the result does not depend on which worker holds it.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from cluster.fl.compression import compress_values, is_neutral
from cluster.fl.local_training import LocalResult
from cluster.rng import stream


def compress_ncf_upload(result: LocalResult, kind: str, levels: np.ndarray, seed: int, round_index: int,
                        rescale_pruned: bool = False) -> LocalResult:
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
    return replace(result, item_deltas=item, dense_deltas=per_client["dense"],
                   cluster_dense_deltas=per_client.get("cluster_dense_deltas"), user_deltas=per_client.get("user_deltas"))
