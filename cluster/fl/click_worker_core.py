"""What a client-worker actor does for a click model (DLRM / DIN), as a plain class: train any
subset of its clients from the global model — each at its tier's width, its upload compressed at
its tier's level — and score its clients' rows for AUC. Click models keep no private state on the
phone (no user id feature), so there is nothing to save between rounds."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np

from cluster.fl.click_batches import predict
from cluster.fl.click_shard import ClickShard
from cluster.fl.click_training import ClickLocalResult, ClickRecipe, train_local_click
from cluster.fl.click_upload import add_decoys, compress_upload, table_rows, touched_rows
from cluster.fl.local_subsample import subsample_rows
from cluster.fl.upload_rows import SentRows, sent_rows
from cluster.fl.worker_core import held_positions
from cluster.models.click import ClickSpec
from cluster.storage import Storage
from configs.fl_schema import TouchedUpload, UploadConfig


@dataclass(frozen=True)
class ClientSettings:
    """What the server asks of each client this round: width (C,) of its model, its upload
    compression ``kind`` at ``levels`` (C,) (prune share or bits), which embedding rows it
    uploads (``upload``), and the share (C,) of its samples it trains on (None: all)."""

    width: np.ndarray
    kind: str
    levels: np.ndarray
    rescale_pruned: bool = False
    upload: UploadConfig = TouchedUpload()
    sample_share: Optional[np.ndarray] = None


class ClickWorkerCore:
    def __init__(self, shard: ClickShard, spec: ClickSpec, recipe: ClickRecipe, seed: int):
        self.shard = shard
        self.spec = spec
        self.recipe = recipe
        self.seed = seed
        self._touched_rows: dict[int, dict[str, np.ndarray]] = {}

    @property
    def n_clients(self) -> int:
        return len(self.shard.clients)

    def train(self, round_index: int, clients: np.ndarray, params: dict[str, np.ndarray],
              settings: Optional[ClientSettings] = None) -> ClickLocalResult:
        clients = np.asarray(clients, dtype=np.int64)
        indptr, rows = self.shard.client_rows(held_positions(self.shard.clients, clients))
        if settings is None:
            return train_local_click(self.spec, self.recipe, params, self.shard.features, clients, indptr, rows)
        train_indptr, train_rows = indptr, rows
        if settings.sample_share is not None:
            train_indptr, train_rows = subsample_rows(indptr, rows, clients, settings.sample_share, self.seed, round_index)
        result = train_local_click(self.spec, self.recipe, params, self.shard.features, clients, train_indptr,
                                   train_rows, settings.width)
        # The rows it sends are those its whole data reads (fixed, so the server can price them).
        sent = [self._sent(settings.upload, int(client), rows[indptr[c] : indptr[c + 1]])
                for c, client in enumerate(clients)]
        result = add_decoys(result, sent, self.seed, round_index)
        return compress_upload(self.spec, result, [s.rows for s in sent], settings.kind, settings.levels, self.seed,
                               round_index, settings.rescale_pruned)

    def _sent(self, upload: UploadConfig, client: int, rows: np.ndarray) -> SentRows:
        return sent_rows(upload, self._touched(client, rows), table_rows(self.spec), self.seed, client)

    def _touched(self, client: int, rows: np.ndarray) -> dict[str, np.ndarray]:
        """The embedding rows a client sends: fixed by its data, so found once and kept."""
        if client not in self._touched_rows:
            self._touched_rows[client] = touched_rows(self.spec, self.shard.features, rows)
        return self._touched_rows[client]

    def evaluate(self, params: dict[str, np.ndarray], split: str = "test",
                 clusters=None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(owner client (n,), label (n,), predicted click probability (n,)) of every ``split``
        row ('test': held out; 'train': the rows clients train on) under the global model.
        ``clusters`` is always None: no strategy that serves per-cluster models runs on click models."""
        rows = self.shard.test_rows if split == "test" else np.sort(self.shard.train_rows)
        features = self.shard.features
        if len(rows) == 0:
            return np.zeros(0, np.int64), np.zeros(0, np.float32), np.zeros(0, np.float32)
        return features.user[rows].astype(np.int64), features.label[rows], predict(self.spec, params, features, rows)

    def save(self, storage: Storage, name: str, round_index: int) -> None:
        """Nothing private to keep: the global model (in the aggregator's checkpoint) is all."""

    def restore(self, storage: Storage, names: list[str]) -> Optional[int]:
        return None
