"""What a client-worker actor does for a click model (DLRM / DIN), as a plain class: train any
subset of its clients from the global model — each at its tier's width, its upload compressed at
its tier's level — and score its clients' rows for AUC. Click models keep no user vector on the
phone (no user id feature); under Ditto each phone keeps its personal dense part, which is saved
with checkpoints and serves (scores) its rows."""

from __future__ import annotations

from dataclasses import replace
from typing import Optional

import numpy as np

from cluster.fl.click_batches import predict
from cluster.fl.click_personal import personal_names, personal_predict, personal_sgd
from cluster.fl.click_shard import ClickShard
from cluster.fl.click_training import ClickRecipe, train_local_click
from cluster.fl.click_upload import add_decoys, compress_upload, table_rows, touched_rows
from cluster.fl.local_subsample import subsample_rows
from cluster.fl.upload_rows import SentRows, sent_rows
from cluster.fl.clustering import assign_clusters, fixed_point_sums, mean_item_rows
from cluster.fl.worker_core import held_positions
from cluster.models.click import ClickSpec, initial_params
from cluster.storage import Storage
from cluster.fl.types import ClientUpdate, ClientSettings, ClusterView
from configs.fl_schema import UploadConfig


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
              settings: Optional[ClientSettings] = None) -> ClientUpdate:
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
        if settings.cluster_of is not None:
            result = self._cluster_pass(result, params, settings, clients, train_indptr, train_rows)
        self._personal_steps(clients, params, train_indptr, train_rows)
        # The rows it sends are those its whole data reads (fixed, so the server can price them).
        sent = [self._sent(settings.upload, int(client), rows[indptr[c] : indptr[c + 1]])
                for c, client in enumerate(clients)]
        result = add_decoys(result, sent, self.seed, round_index)
        return compress_upload(self.spec, result, [s.rows for s in sent], settings.kind, settings.levels, self.seed,
                               round_index, settings.rescale_pruned)

    def _cluster_pass(self, at_global: ClientUpdate, params: dict[str, np.ndarray], settings: ClientSettings,
                      clients: np.ndarray, indptr: np.ndarray, rows: np.ndarray) -> ClientUpdate:
        """Cali3F delegate: its pass at w gives the global dense part's update; its pass at its
        cluster's dense part gives CaliUp's gradient and the embedding rows that serve it."""
        own = {n: v[settings.cluster_of] for n, v in settings.cluster_dense.items()}
        at_cluster = train_local_click(self.spec, self.recipe, params, self.shard.features, clients, indptr, rows,
                                       client_dense=own)
        dense = set(own)
        return replace(at_cluster, loss=at_global.loss,
                       dense_deltas={n: (at_global if n in dense else at_cluster).dense_deltas[n]
                                     for n in at_cluster.dense_deltas},
                       cluster_dense_deltas={n: at_cluster.dense_deltas[n] for n in own})

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
                 clusters: Optional[ClusterView] = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(owner client (n,), label (n,), predicted click probability (n,)) of every ``split``
        row ('test': held out; 'train': the rows clients train on) under the model that serves
        its owner: the global one, its personal one (Ditto) or its cluster's (Cali3F)."""
        rows = self.shard.test_rows if split == "test" else np.sort(self.shard.train_rows)
        features = self.shard.features
        if len(rows) == 0:
            return np.zeros(0, np.int64), np.zeros(0, np.float32), np.zeros(0, np.float32)
        owners = features.user[rows].astype(np.int64)
        if self.personal is None and clusters is None:
            return owners, features.label[rows], predict(self.spec, params, features, rows)
        by_owner = np.argsort(owners, kind="stable")
        held, counts = np.unique(owners, return_counts=True)
        scores = np.empty(len(rows), np.float32)
        scores[by_owner] = personal_predict(self.spec, params, self._served_dense(held, clusters), features,
                                            np.r_[0, np.cumsum(counts)], rows[by_owner])
        return owners, features.label[rows], scores

    def _served_dense(self, clients: np.ndarray, clusters: Optional[ClusterView]) -> dict[str, np.ndarray]:
        """The dense part (C, *shape) that serves each of ``clients``: personal, or its cluster's."""
        if self.personal is not None:
            return {n: v[held_positions(self.shard.clients, clients)] for n, v in self.personal.items()}
        return {n: v[clusters.labels[clients]] for n, v in clusters.dense.items()}

    # ------------------------------------------------------------------ Cali3F device halves
    def shift_subordinates(self, delegates, labels, mean_update: dict[str, np.ndarray], discount: float) -> None:
        """Eq. 4 moves user vectors; a click model has none, so a subordinate keeps what it has."""
        if mean_update:
            raise ValueError(f"a click model has no user table to shift, but got updates for {sorted(mean_update)}")

    def _user_matrix(self, params: dict[str, np.ndarray]) -> np.ndarray:
        """Each client's taste as its device can tell without a user table: the mean of the
        global item-embedding rows of its train samples (zero for a client without any)."""
        return mean_item_rows(params["emb.item"], self.shard.features.item, self.shard.train_indptr,
                              self.shard.train_rows)

    def cluster_sums(self, n_clusters: int, centroids: Optional[np.ndarray], labels: Optional[np.ndarray],
                     params: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """This worker's share of a Lloyd step (see ``ClientWorkerCore.cluster_sums``)."""
        users = self._user_matrix(params)
        mine = labels[self.shard.clients] if labels is not None else assign_clusters(users, centroids)
        return fixed_point_sums(users, mine, n_clusters)

    def assign_clusters(self, centroids: np.ndarray, params: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        return self.shard.clients, assign_clusters(self._user_matrix(params), centroids)

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
