"""What a client-worker actor does for a click model (DLRM / DIN), as a plain class: train any
subset of its clients from the global model — each at its tier's width, its upload compressed at
its tier's level — and score its clients' rows for AUC. Click models keep no user vector on the
phone (no user id feature); under Ditto each phone keeps its personal dense part, which is saved
with checkpoints and serves (scores) its rows."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np

from cluster.fl.click_batches import predict
from cluster.fl.click_personal import personal_names, personal_predict, personal_sgd
from cluster.fl.click_shard import ClickShard
from cluster.fl.click_training import ClickLocalResult, ClickRecipe, train_local_click
from cluster.fl.click_upload import add_decoys, compress_upload, table_rows, touched_rows
from cluster.fl.local_subsample import subsample_rows
from cluster.fl.upload_rows import SentRows, sent_rows
from cluster.fl.worker_core import held_positions
from cluster.models.click import ClickSpec, initial_params
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
        # Ditto: every client's personal dense part starts at w⁰, as the server's model does.
        self.personal = None
        if recipe.personal_lambda is not None:
            start = initial_params(spec, seed)
            self.personal = {n: np.repeat(start[n][None], self.n_clients, axis=0) for n in personal_names(spec)}

    @property
    def n_clients(self) -> int:
        return len(self.shard.clients)

    def train(self, round_index: int, clients: np.ndarray, params: dict[str, np.ndarray],
              settings: Optional[ClientSettings] = None) -> ClickLocalResult:
        clients = np.asarray(clients, dtype=np.int64)
        indptr, rows = self.shard.client_rows(held_positions(self.shard.clients, clients))
        if settings is None:
            result = train_local_click(self.spec, self.recipe, params, self.shard.features, clients, indptr, rows)
            self._personal_steps(clients, params, indptr, rows)
            return result
        train_indptr, train_rows = indptr, rows
        if settings.sample_share is not None:
            train_indptr, train_rows = subsample_rows(indptr, rows, clients, settings.sample_share, self.seed, round_index)
        result = train_local_click(self.spec, self.recipe, params, self.shard.features, clients, train_indptr,
                                   train_rows, settings.width)
        self._personal_steps(clients, params, train_indptr, train_rows)
        # The rows it sends are those its whole data reads (fixed, so the server can price them).
        sent = [self._sent(settings.upload, int(client), rows[indptr[c] : indptr[c + 1]])
                for c, client in enumerate(clients)]
        result = add_decoys(result, sent, self.seed, round_index)
        return compress_upload(self.spec, result, [s.rows for s in sent], settings.kind, settings.levels, self.seed,
                               round_index, settings.rescale_pruned)

    def _personal_steps(self, clients: np.ndarray, params: dict[str, np.ndarray], indptr: np.ndarray,
                        rows: np.ndarray) -> None:
        """Ditto: each client's personal dense part steps on the rows it trained on this round."""
        if self.personal is None:
            return
        at = held_positions(self.shard.clients, clients)
        mine = {n: v[at] for n, v in self.personal.items()}
        stepped = personal_sgd(self.spec, self.recipe.epochs, self.recipe.lr, self.recipe.personal_lambda, params,
                               mine, self.shard.features, indptr, rows)
        for name, value in stepped.items():
            self.personal[name][at] = value

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
        row ('test': held out; 'train': the rows clients train on) under the model that serves
        its owner: the global one, or under Ditto the owner's personal one. ``clusters`` is
        always None: no strategy that serves per-cluster models runs on click models."""
        rows = self.shard.test_rows if split == "test" else np.sort(self.shard.train_rows)
        features = self.shard.features
        if len(rows) == 0:
            return np.zeros(0, np.int64), np.zeros(0, np.float32), np.zeros(0, np.float32)
        owners = features.user[rows].astype(np.int64)
        if self.personal is None:
            return owners, features.label[rows], predict(self.spec, params, features, rows)
        by_owner = np.argsort(owners, kind="stable")
        held, counts = np.unique(owners, return_counts=True)
        personal = {n: v[held_positions(self.shard.clients, held)] for n, v in self.personal.items()}
        scores = np.empty(len(rows), np.float32)
        scores[by_owner] = personal_predict(self.spec, params, personal, features, np.r_[0, np.cumsum(counts)],
                                            rows[by_owner])
        return owners, features.label[rows], scores

    def save(self, storage: Storage, name: str, round_index: int) -> None:
        """The Ditto personal models, as a phone would keep them; without Ditto nothing is
        private: the global model (in the aggregator's checkpoint) is all."""
        if self.personal is not None:
            storage.write_npz(name, clients=self.shard.clients, round_index=np.int64(round_index),
                              **{f"personal.{n}": v for n, v in self.personal.items()})

    def restore(self, storage: Storage, names: list[str]) -> Optional[int]:
        """Load this worker's clients' personal models from any saved files (whatever worker
        wrote them); returns the round they were saved at, or None when there is nothing to load."""
        if self.personal is None:
            return None
        saved_round = None
        for name in names:
            saved = storage.read_npz(name)
            mine = np.isin(saved["clients"], self.shard.clients)
            at = held_positions(self.shard.clients, saved["clients"][mine])
            for dense in self.personal:
                self.personal[dense][at] = saved[f"personal.{dense}"][mine]
            saved_round = int(saved["round_index"])
        return saved_round
