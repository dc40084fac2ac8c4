"""What a client-worker actor does for a click model (DLRM / DIN), as a plain class: train any
subset of its clients from the global model — each at its tier's width, its upload compressed at
its tier's level — and score its clients' rows for AUC. Click models keep no user vector on the
phone (no user id feature). A strategy's device half may run further passes over the same rows
(``ClickLocalPass``)."""

from __future__ import annotations

from dataclasses import replace
from typing import Optional

import numpy as np

from cluster.fl.families.click.batches import predict
from cluster.fl.families.click.personal import personal_predict, personal_sgd
from cluster.fl.families.click.shard import shard_features
from cluster.fl.shard import ClientShard
from cluster.fl.families.click.training import ClickOptions, ClientRows, train_local_click
from cluster.fl.recipe import LocalRecipe
from cluster.fl.families.click.upload import UploadCompression, add_decoys, compress_upload, table_rows, touched_rows
from cluster.fl.families.click.subsample import subsample_rows
from cluster.fl.upload_rows import SentRows, sent_rows
from cluster.arrays import mean_item_rows
from cluster.fl.device import DeviceHalf
from cluster.fl.worker_core import WorkerCore
from cluster.fl.families.click.model import ClickSpec
from cluster.fl.families.click.net import initial_params
from cluster.fl.types import ClientUpdate, ClientSettings, ClusterView
from configs.fl_schema import UploadConfig


_NONE = np.zeros(0, np.int64)


class ClickLocalPass:
    """One round's local training of some click-model clients on the rows they train on
    (``LocalPass``); every pass starts from the round's global model."""

    def __init__(self, core: ClickWorkerCore, params: dict[str, np.ndarray], data: ClientRows):
        self.core, self.params, self.data = core, params, data

    def _train(self, options: ClickOptions) -> ClientUpdate:
        core = self.core
        return train_local_click(core.spec, core.recipe, self.params, core.features, self.data, options)

    def first(self, fractions: Optional[np.ndarray], correction: Optional[dict]) -> ClientUpdate:
        """The clients' pass at the global model, each at its tier's width."""
        return self._train(ClickOptions(fractions, correction=correction))

    def pass_at(self, dense: dict[str, np.ndarray]) -> ClientUpdate:
        return self._train(ClickOptions(client_dense=dense))

    def personal_step(self, personal: dict[str, np.ndarray], lam: float) -> dict[str, np.ndarray]:
        core, data = self.core, self.data
        recipe = replace(core.recipe, personal_lambda=lam)
        return personal_sgd(core.spec, recipe, self.params, personal, core.features, data.indptr, data.rows)


class ClickWorkerCore(WorkerCore):
    """A click family's worker: clients with their own feature rows and no private table."""

    def __init__(
        self, shard: ClientShard, spec: ClickSpec, recipe: LocalRecipe, seed: int, device: Optional[DeviceHalf] = None
    ):
        self.features = shard_features(shard)
        self._touched_rows: dict[int, dict[str, np.ndarray]] = {}
        self._sent_rows: dict[tuple[UploadConfig, int], SentRows] = {}
        self._tables = table_rows(spec)
        super().__init__(shard, spec, recipe, seed, device)

    def initial_params(self) -> dict[str, np.ndarray]:
        return initial_params(self.spec, self.seed)

    def train(
        self,
        round_index: int,
        clients: np.ndarray,
        params: dict[str, np.ndarray],
        settings: Optional[ClientSettings] = None,
    ) -> ClientUpdate:
        clients = np.asarray(clients, dtype=np.int64)
        at = self._rows(clients)
        indptr, rows = self.shard.examples_of(at)
        train_indptr, train_rows = indptr, rows
        if settings is not None and settings.sample_share is not None:
            train_indptr, train_rows = subsample_rows(
                indptr, rows, clients, settings.sample_share, self.seed, round_index
            )
        local = ClickLocalPass(self, params, ClientRows(clients, train_indptr, train_rows))
        width = None if settings is None else settings.width
        result = local.first(width, self.device.correction(self, at, settings))
        result = self.device.after_local(self, local, at, settings, result)
        if settings is None:
            return result
        # The rows it sends are those its whole data reads (fixed, so the server can price them).
        sent = [
            self._sent(settings.upload, int(client), rows[indptr[c] : indptr[c + 1]])
            for c, client in enumerate(clients)
        ]
        if settings.upload.kind == "padded":  # the only upload with decoy rows
            result = add_decoys(result, sent, self.seed, round_index)
        return compress_upload(
            self.spec,
            result,
            [s.rows for s in sent],
            UploadCompression(settings.kind, settings.levels, settings.rescale_pruned),
            self.seed,
            round_index,
        )

    def _sent(self, upload: UploadConfig, client: int, rows: np.ndarray) -> SentRows:
        """The rows a client sends: fixed by its data, its seed and the upload, so drawn once."""
        key = (upload, client)
        if key not in self._sent_rows:
            tables = self._tables
            # A dense upload sends every row whatever the client read: no need to find them.
            touched = dict.fromkeys(tables, _NONE) if upload.kind == "dense" else self._touched(client, rows)
            self._sent_rows[key] = sent_rows(upload, touched, tables, self.seed, client)
        return self._sent_rows[key]

    def _touched(self, client: int, rows: np.ndarray) -> dict[str, np.ndarray]:
        """The embedding rows a client sends: fixed by its data, so found once and kept."""
        if client not in self._touched_rows:
            self._touched_rows[client] = touched_rows(self.spec, self.features, rows)
        return self._touched_rows[client]

    def evaluate(
        self, params: dict[str, np.ndarray], split: str = "test", clusters: Optional[ClusterView] = None
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(owner client (n,), label (n,), predicted click probability (n,)) of every ``split``
        row ('test': held out; 'train': the rows clients train on) under the model that serves
        its owner: the global one, its personal one (Ditto) or its cluster's (Cali3F)."""
        rows = self.shard.test["rows"] if split == "test" else np.sort(self.shard.train)
        features = self.features
        if len(rows) == 0:
            return np.zeros(0, np.int64), np.zeros(0, np.float32), np.zeros(0, np.float32)
        owners = features.user[rows].astype(np.int64)
        held, counts = np.unique(owners, return_counts=True)
        served = self._served_dense(self._rows(held), clusters)
        if served is None:
            return owners, features.label[rows], predict(self.spec, params, features, rows)
        by_owner = np.argsort(owners, kind="stable")
        scores = np.empty(len(rows), np.float32)
        scores[by_owner] = personal_predict(
            self.spec,
            params,
            served,
            features,
            np.r_[0, np.cumsum(counts)],
            rows[by_owner],
        )
        return owners, features.label[rows], scores

    def clustering_vectors(self, params: dict[str, np.ndarray]) -> np.ndarray:
        """Each client's taste as its device can tell without a user table: the mean of the
        global item-embedding rows of its train samples (zero for a client without any)."""
        return mean_item_rows(params["emb.item"], self.features.item, self.shard.train_indptr, self.shard.train)
