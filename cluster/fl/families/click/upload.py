"""What a click-model client uploads: its dense (MLP) weights at its width, and the embedding rows
``fl.upload`` sends — the rows its own samples read (item ids of its samples and history, their
genres, its own user-code rows), every row (dense), or the read rows among decoys (padded;
``upload_rows.py``) — each tensor compressed with its tier's pruning or quantization (RF² Table 1).

The rows a client sends are fixed by its data, so the server can price the upload (and the
round's latency) before the client trains; a touched row is sent even when its change happens
to be zero, as a phone would not inspect it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Optional

import numpy as np

from cluster.arrays import sorted_union, sorted_unique
from cluster.fl.families.click.features import ClickFeatures
from cluster.fl.compression import compress_values, is_neutral
from cluster.fl.upload_rows import SentRows, fill_decoys, sent_row_count
from cluster.fl.families.click.model import EMBEDDING_PREFIX, ClickSpec, channel_masks
from cluster.rng import stream
from cluster.fl.types import ClientUpdate
from configs.fl_schema import TouchedUpload, UploadConfig

TOUCHED = TouchedUpload()  # the default upload, built once: a config model is immutable


def touched_rows(spec: ClickSpec, features: ClickFeatures, rows: np.ndarray) -> dict[str, np.ndarray]:
    """Embedding rows (sorted ids per table) read by the samples ``rows`` of one client."""
    _, history_items, _ = features.history(rows, spec.history_len)
    items = sorted_union(features.item[rows], history_items).astype(np.int64)
    genres = np.flatnonzero(features.item_genres[features.item[rows]].any(axis=0)).astype(np.int64)
    touched = {"emb.item": items, "emb.genre": genres}
    codes = features.user_cats[features.user[rows]]
    for k, (name, _) in enumerate(spec.cats):
        touched[f"emb.{name}"] = sorted_unique(codes[:, k]).astype(np.int64)
    return touched


def dense_entries(spec: ClickSpec, width: float) -> int:
    """Entries of the non-embedding parameters a client of ``width`` holds."""
    return int(
        sum(mask.sum() for name, mask in channel_masks(spec, width).items() if not name.startswith(EMBEDDING_PREFIX))
    )


def table_rows(spec: ClickSpec) -> dict[str, int]:
    """Rows of each embedding table."""
    return {name: shape[0] for name, shape in spec.shapes().items() if name.startswith(EMBEDDING_PREFIX)}


def upload_size(
    spec: ClickSpec,
    features: ClickFeatures,
    indptr: np.ndarray,
    rows: np.ndarray,
    upload: UploadConfig = TOUCHED,
) -> tuple[np.ndarray, np.ndarray]:
    """Per client of the CSR (indptr (C + 1,), rows): (embedding entries it sends, row ids it
    sends). A dense upload sends every row in table order, so no ids."""
    n_clients = len(indptr) - 1
    entries, id_count = np.zeros(n_clients, np.int64), np.zeros(n_clients, np.int64)
    sizes = table_rows(spec)
    for c in range(n_clients):
        touched = touched_rows(spec, features, rows[indptr[c] : indptr[c + 1]])
        sent = sent_row_count(upload, {name: len(ids) for name, ids in touched.items()}, sizes)
        entries[c] = sent * spec.dim
        id_count[c] = 0 if upload.kind == "dense" else sent
    return entries, id_count


def add_decoys(result: ClientUpdate, sent: Sequence[SentRows], seed: int, round_index: int) -> ClientUpdate:
    """``result`` with each client's decoy rows filled (``upload_rows.fill_decoys``), from the
    client's own stream (seed, round, client); a proxy upload gets its own decoy values."""
    if not any(len(ids) for s in sent for ids in s.decoys.values()):
        return result
    return replace(
        result,
        dense_deltas=_with_decoys(result.dense_deltas, result.clients, sent, seed, round_index, "upload-decoy-values"),
        proxy_deltas=_with_decoys(result.proxy_deltas, result.clients, sent, seed, round_index, "proxy-decoy-values"),
    )


def _with_decoys(
    tensors: dict[str, np.ndarray],
    clients: np.ndarray,
    sent: Sequence[SentRows],
    seed: int,
    round_index: int,
    purpose: str,
) -> dict[str, np.ndarray]:
    if not tensors:  # no proxy upload this round
        return tensors
    tensors = {name: value.copy() for name, value in tensors.items()}
    for c, client in enumerate(clients):
        rng = stream(seed, purpose, round_index, int(client))
        for name, decoys in sent[c].decoys.items():
            real = np.setdiff1d(sent[c].rows[name], decoys, assume_unique=True)
            fill_decoys(tensors[name][c], real, decoys, rng)
    return tensors


@dataclass(frozen=True)
class UploadCompression:
    """How the clients (C,) compress what they send: ``kind`` 'prune', 'quant' or 'quants'
    (anything else: sent as float32) at each one's ``levels[c]`` (prune share or bits), a pruned
    tensor rescaled to stay unbiased when ``rescale_pruned``."""

    kind: str
    levels: Optional[np.ndarray]
    rescale_pruned: bool = False


def compress_upload(
    spec: ClickSpec,
    result: ClientUpdate,
    sent: Sequence[dict[str, np.ndarray]],
    compression: UploadCompression,
    seed: int,
    round_index: int,
) -> ClientUpdate:
    """The deltas as the server reconstructs them after each client's ``compression``, tensor
    by tensor over the entries it sends: its width's dense entries and its ``sent[c]``
    embedding rows (``touched_rows``, or all, or padded: ``upload_rows``). Draws
    come from the client's own stream (seed, round, client id), so they do not depend on who
    shares its worker. A proxy upload and a Cali3F delegate's cluster pass are compressed alike,
    each from a stream of its own, except that a pruned proxy is always rescaled: CEAG's
    aggregator adds Σ_c k_c × proxy_c as the gradient of its constraint term, which stays exact
    in expectation only if compression leaves each proxy unbiased (Quant and QuantS are)."""
    kind, levels = compression.kind, compression.levels
    if kind not in ("prune", "quant", "quants"):
        return result
    if levels is None:
        raise ValueError(f"{kind!r} compression needs each client's level (ClientSettings.levels)")
    widths = np.ones(len(result.clients), np.float32) if result.fractions is None else result.fractions
    upload = _Compression(spec, widths, sent, kind, levels, compression.rescale_pruned)
    cluster = result.cluster_dense_deltas
    return replace(
        result,
        dense_deltas=upload.apply(result.dense_deltas, result.clients, seed, round_index, "compress"),
        proxy_deltas=replace(upload, rescale_pruned=True).apply(
            result.proxy_deltas, result.clients, seed, round_index, "compress-proxy"
        ),
        cluster_dense_deltas=None
        if cluster is None
        else upload.apply(cluster, result.clients, seed, round_index, "compress-cluster"),
    )


@dataclass(frozen=True)
class _Compression:
    spec: ClickSpec
    fractions: np.ndarray
    sent: Sequence[dict[str, np.ndarray]]
    kind: str
    levels: np.ndarray
    rescale_pruned: bool

    def apply(
        self, tensors: dict[str, np.ndarray], clients: np.ndarray, seed: int, round_index: int, purpose: str
    ) -> dict[str, np.ndarray]:
        if not tensors:  # no proxy upload this round
            return tensors
        tensors = {name: value.copy() for name, value in tensors.items()}
        width_masks = {float(f): channel_masks(self.spec, float(f)) for f in np.unique(self.fractions)}
        for c, client in enumerate(clients):
            level = float(self.levels[c])
            if is_neutral(self.kind, level):
                continue
            rng = stream(seed, purpose, round_index, int(client))
            for name in tensors:
                if name.startswith(EMBEDDING_PREFIX):
                    index = (c, self.sent[c][name])
                else:
                    index = (c, width_masks[float(self.fractions[c])][name])
                tensors[name][index] = compress_values(tensors[name][index], self.kind, level, rng, self.rescale_pruned)
        return tensors
