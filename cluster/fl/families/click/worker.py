"""What a client-worker actor does for a click model (DLRM / DIN), as a plain class: train any
subset of its clients from the global model — each at its tier's width, its upload compressed at
its tier's level — and score its clients' rows for AUC. Click models keep no user vector on the
phone (no user id feature); under Ditto each phone keeps its personal dense part (the shared
device state is ``WorkerCore``'s)."""

from __future__ import annotations

from dataclasses import replace
from typing import Optional

import numpy as np

from cluster.fl.families.click.batches import predict
from cluster.fl.families.click.personal import personal_predict, personal_sgd
from cluster.fl.families.click.shard import shard_features
from cluster.fl.shard import ClientShard
from cluster.fl.families.click.training import train_local_click
from cluster.fl.local_sgd import LocalRecipe
from cluster.fl.families.click.upload import add_decoys, compress_upload, table_rows, touched_rows
from cluster.fl.families.click.subsample import subsample_rows
from cluster.fl.upload_rows import SentRows, sent_rows
from cluster.fl.clustering import mean_item_rows
from cluster.fl.worker_core import WorkerCore
from cluster.fl.families.click.model import ClickSpec, initial_params
from cluster.fl.types import ClientUpdate, ClientSettings, ClusterView
from configs.fl_schema import UploadConfig


class ClickWorkerCore(WorkerCore):
    """A click family's worker: clients with their own feature rows and no private table."""

    def __init__(self, shard: ClientShard, spec: ClickSpec, recipe: LocalRecipe, seed: int):
        super().__init__(
            shard, spec, recipe, seed, initial_params(spec, seed) if recipe.personal_lambda is not None else None
        )
        self.features = shard_features(shard)
        self._touched_rows: dict[int, dict[str, np.ndarray]] = {}

    def train(
        self,
        round_index: int,
        clients: np.ndarray,
        params: dict[str, np.ndarray],
        settings: Optional[ClientSettings] = None,
    ) -> ClientUpdate:
        clients = np.asarray(clients, dtype=np.int64)
        indptr, rows = self.shard.examples_of(self._rows(clients))
        if settings is None:
            result = train_local_click(self.spec, self.recipe, params, self.features, clients, indptr, rows)
            self._personal_steps(clients, params, indptr, rows)
            return result
        train_indptr, train_rows = indptr, rows
        if settings.sample_share is not None:
            train_indptr, train_rows = subsample_rows(
                indptr, rows, clients, settings.sample_share, self.seed, round_index
            )
        at = self._rows(clients)
        result = train_local_click(
            self.spec,
            self.recipe,
            params,
            self.features,
            clients,
            train_indptr,
            train_rows,
            settings.width,
            correction=self.control_correction(at, settings),
        )
        result = self.step_controls(at, settings, result)
        if settings.cluster_of is not None:
            result = self._cluster_pass(result, params, settings, clients, train_indptr, train_rows)
        self._personal_steps(clients, params, train_indptr, train_rows)
        # The rows it sends are those its whole data reads (fixed, so the server can price them).
        sent = [
            self._sent(settings.upload, int(client), rows[indptr[c] : indptr[c + 1]])
            for c, client in enumerate(clients)
        ]
        result = add_decoys(result, sent, self.seed, round_index)
        return compress_upload(
            self.spec,
            result,
            [s.rows for s in sent],
            settings.kind,
            settings.levels,
            self.seed,
            round_index,
            settings.rescale_pruned,
        )

    def _cluster_pass(
        self,
        at_global: ClientUpdate,
        params: dict[str, np.ndarray],
        settings: ClientSettings,
        clients: np.ndarray,
        indptr: np.ndarray,
        rows: np.ndarray,
    ) -> ClientUpdate:
        """Cali3F delegate: its pass at w gives the global dense part's update; its pass at its
        cluster's dense part gives CaliUp's gradient and the embedding rows that serve it."""
        own = settings.own_cluster_dense()
        at_cluster = train_local_click(
            self.spec, self.recipe, params, self.features, clients, indptr, rows, client_dense=own
        )
        dense = set(own)
        return replace(
            at_cluster,
            loss=at_global.loss,
            dense_deltas={
                n: (at_global if n in dense else at_cluster).dense_deltas[n] for n in at_cluster.dense_deltas
            },
            cluster_dense_deltas={n: at_cluster.dense_deltas[n] for n in own},
        )

    def _personal_steps(
        self, clients: np.ndarray, params: dict[str, np.ndarray], indptr: np.ndarray, rows: np.ndarray
    ) -> None:
        """Ditto: each client's personal dense part steps on the rows it trained on this round."""
        if self.personal is None:
            return
        at = self._rows(clients)
        mine = {n: v[at] for n, v in self.personal.items()}
        stepped = personal_sgd(self.spec, self.recipe, params, mine, self.features, indptr, rows)
        for name, value in stepped.items():
            self.personal[name][at] = value

    def _sent(self, upload: UploadConfig, client: int, rows: np.ndarray) -> SentRows:
        return sent_rows(upload, self._touched(client, rows), table_rows(self.spec), self.seed, client)

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
        if self.personal is None and clusters is None:
            return owners, features.label[rows], predict(self.spec, params, features, rows)
        by_owner = np.argsort(owners, kind="stable")
        held, counts = np.unique(owners, return_counts=True)
        served = self._served_dense(self._rows(held), clusters)
        assert served is not None  # a personal or a cluster's dense part, as checked above
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

    def _user_matrix(self, params: dict[str, np.ndarray]) -> np.ndarray:
        """Each client's taste as its device can tell without a user table: the mean of the
        global item-embedding rows of its train samples (zero for a client without any)."""
        return mean_item_rows(params["emb.item"], self.features.item, self.shard.train_indptr, self.shard.train)
