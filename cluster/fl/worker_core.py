"""What one client-worker actor does, as a plain class: it holds many simulated clients — their
training data, held-out candidates and private user vectors — and trains or evaluates any
subset of them in one batched call. The private vectors never leave this object.

Under Cali3F a delegate trains twice, at the global model and at its cluster's model, and the
worker runs the device halves of eq. 4 and of re-clustering (``cluster/fl/cali3f.py``,
``clustering.py``). Under Ditto it also keeps every client's personal dense part."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Optional

import numpy as np
import torch

from cluster.arrays import ranges, sorted_unique
from cluster.fl.cali3f import subordinate_user_update
from cluster.fl.clustering import assign_clusters, fixed_point_sums
from cluster.fl.local_training import LocalRecipe, train_local
from cluster.fl.metrics import rank_metrics
from cluster.fl.negatives import hashed_negatives
from cluster.fl.ncf_upload import compress_ncf_upload, widen_ncf_upload
from cluster.models.ncf import (
    NCFSpec,
    initial_params,
    retrieval_queries,
    score_candidates,
)
from cluster.storage import Storage
from cluster.fl.types import ClusterView, ClientUpdate, ClientSettings

EVAL_CHUNK = 4096
# The round index whose hashed negatives the train-split pair measure uses: one no run reaches.
TRAIN_PAIRS_ROUND = 2**31 - 1


@dataclass(frozen=True)
class ClientShard:
    """The clients of one worker. clients: (C,) ascending global ids; their positives are
    ``items[indptr[c]:indptr[c+1]]``; test_clients (T,) ⊂ clients with test_candidates (T, K)
    (test item first); users0[table]: (C, d) starting private vectors."""

    clients: np.ndarray
    indptr: np.ndarray
    items: np.ndarray
    test_clients: np.ndarray
    test_candidates: np.ndarray
    users0: dict[str, np.ndarray]

    def save(self, storage: Storage, name: str) -> None:
        """One .npz per worker in the run's storage, so a worker restarted on any node reloads its clients."""
        arrays = {f"users0.{t}": v for t, v in self.users0.items()}
        storage.write_npz(name, clients=self.clients, indptr=self.indptr, items=self.items,
                          test_clients=self.test_clients, test_candidates=self.test_candidates, **arrays)

    @classmethod
    def load(cls, storage: Storage, name: str) -> "ClientShard":
        f = storage.read_npz(name)
        users0 = {k.split(".", 1)[1]: v for k, v in f.items() if k.startswith("users0.")}
        return cls(f["clients"], f["indptr"], f["items"], f["test_clients"], f["test_candidates"], users0)


def held_positions(held: np.ndarray, clients: np.ndarray) -> np.ndarray:
    """Positions of ``clients`` in a worker's ascending ``held`` ids; KeyError naming any it lacks."""
    positions = np.minimum(np.searchsorted(held, clients), len(held) - 1)
    if len(clients) and not np.array_equal(held[positions], clients):
        missing = np.setdiff1d(clients, held)
        raise KeyError(f"clients {missing[:5].tolist()} are not held by this worker")
    return positions


class ClientWorkerCore:
    def __init__(self, shard: ClientShard, spec: NCFSpec, recipe: LocalRecipe, seed: int):
        self.shard = shard
        self.spec = spec
        self.recipe = recipe
        self.seed = seed
        self.users = {t: v.copy() for t, v in shard.users0.items()}
        self._test_rows = self._rows(shard.test_clients)
        owners = np.repeat(shard.clients, np.diff(shard.indptr))
        self._positive_keys = sorted_unique(owners * spec.n_items + shard.items)  # negatives avoid these
        # Ditto: every client's personal dense part starts at w⁰, as the server's model does.
        self.personal = None
        if recipe.personal_lambda is not None:
            start = initial_params(spec, seed)
            self.personal = {n: np.repeat(start[n][None], self.n_clients, axis=0) for n in spec.dense_shapes()}

    def _rows(self, clients: np.ndarray) -> np.ndarray:
        return held_positions(self.shard.clients, clients)

    @property
    def n_clients(self) -> int:
        return len(self.shard.clients)

    def train(self, round_index: int, clients: np.ndarray, params: dict[str, np.ndarray],
              settings: Optional[ClientSettings] = None) -> ClientUpdate:
        clients = np.asarray(clients, dtype=np.int64)
        rows = self._rows(clients)
        starts, ends = self.shard.indptr[rows], self.shard.indptr[rows + 1]
        lengths = ends - starts
        indptr = np.r_[0, np.cumsum(lengths)]
        pos = np.repeat(starts - indptr[:-1], lengths) + np.arange(indptr[-1])
        users = {t: v[rows] for t, v in self.users.items()}

        def local(recipe: LocalRecipe, user_start: dict, **options) -> tuple[ClientUpdate, dict]:
            return train_local(self.spec, recipe, params, user_start, clients, indptr, self.shard.items[pos], self.seed,
                               round_index, positive_keys=self._positive_keys, **options)

        result, new_users = local(self.recipe, users, fractions=None if settings is None else settings.width)
        if settings is not None and settings.cluster_of is not None:
            # Cali3F delegate: its pass at w feeds the global dense part; its pass at its cluster's
            # model gives CaliUp's gradient, and the item and user updates that serve it.
            at_cluster, new_users = local(self.recipe, users, client_dense={
                n: v[settings.cluster_of] for n, v in settings.cluster_dense.items()})
            result = replace(at_cluster, loss=result.loss, dense_deltas=result.dense_deltas,
                             cluster_dense_deltas=at_cluster.dense_deltas,
                             user_deltas={t: new_users[t] - users[t] for t in users})
        if self.personal is not None:
            # Ditto: the personal dense part steps toward the client's data and w, with the item
            # rows and the user vector it is used with (the latter just trained) held fixed.
            personal = {n: v[rows] for n, v in self.personal.items()}
            frozen = replace(self.recipe, lr_item=0.0, lr_user=0.0)
            stepped, _ = local(frozen, new_users, client_dense=personal, prox_lambda=self.recipe.personal_lambda)
            for name, delta in stepped.dense_deltas.items():
                self.personal[name][rows] = personal[name] + delta
        for table, vectors in new_users.items():
            self.users[table][rows] = vectors
        if settings is not None:
            result = widen_ncf_upload(result, settings.upload, self.spec.n_items, self.seed, round_index)
        if settings is not None and settings.levels is not None:
            result = compress_ncf_upload(result, settings.kind, settings.levels, self.seed, round_index,
                                         settings.rescale_pruned)
        return result

    # ------------------------------------------------------------------ Cali3F device halves
    def shift_subordinates(self, delegates: np.ndarray, labels: np.ndarray, mean_update: dict[str, np.ndarray],
                           discount: float) -> None:
        """Eq. 4 on the device: every client here that was not a delegate this round moves its
        user vectors by ``discount`` × its cluster's ``mean_update[table]`` (P, d)."""
        rows = np.flatnonzero(~np.isin(self.shard.clients, delegates))
        cluster_of = labels[self.shard.clients[rows]]
        for table, update in mean_update.items():
            self.users[table][rows] = subordinate_user_update(self.users[table][rows], cluster_of, update, discount)

    def _user_matrix(self) -> np.ndarray:
        users = np.concatenate([self.users[t] for t in self.spec.user_tables], axis=1)
        if not np.isfinite(users).all():
            raise FloatingPointError("user vectors diverged (NaN or inf), so they cannot be clustered; "
                                     "lower the learning rates (fl.client_lr, fl.item_lr_scale, fl.user_lr_scale)")
        return users

    def cluster_sums(self, n_clusters: int, centroids: Optional[np.ndarray] = None,
                     labels: Optional[np.ndarray] = None, params: Optional[dict] = None) -> tuple[np.ndarray, np.ndarray]:
        """This worker's share of a Lloyd step: fixed-point sums (P, f) and counts (P,) of its
        clients' user vectors per cluster, clusters given (``labels`` (n_users,)) or nearest to
        ``centroids`` (P, f). The vectors are on the device: the global ``params`` are not needed."""
        users = self._user_matrix()
        mine = labels[self.shard.clients] if labels is not None else assign_clusters(users, centroids)
        return fixed_point_sums(users, mine, n_clusters)

    def assign_clusters(self, centroids: np.ndarray, params: Optional[dict] = None) -> tuple[np.ndarray, np.ndarray]:
        """(clients, nearest centroid of each): what each device reports after re-clustering."""
        return self.shard.clients, assign_clusters(self._user_matrix(), centroids)

    def _client_dense(self, rows: np.ndarray, clusters: Optional[ClusterView]) -> Optional[dict[str, np.ndarray]]:
        """The dense part each client at ``rows`` is served with: personal (Ditto), its
        cluster's (Cali3F), or None (the global one)."""
        if self.personal is not None:
            return {n: v[rows] for n, v in self.personal.items()}
        if clusters is not None:
            cluster_of = clusters.labels[self.shard.clients[rows]]
            return {n: v[cluster_of] for n, v in clusters.dense.items()}
        return None

    def evaluate(self, params: dict[str, np.ndarray], split: str = "test", clusters: Optional[ClusterView] = None,
                 k: int = 10) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(test_clients, HR@k, NDCG@k) of this worker's held-out clients under ``params`` and
        each client's own private vector (and its personal or cluster dense part); for split
        'train', (owner, bit, 1) per (train positive, sampled negative) pair (``train_pairs``)."""
        if split == "train":
            return self.train_pairs(params, clusters)
        if split != "test":
            raise ValueError(f"NCF models evaluate splits 'test' (leave-one-out) and 'train', not {split!r}")
        torch_params = {n: torch.from_numpy(v) for n, v in params.items()}
        hits, ndcgs = [], []
        with torch.no_grad():
            for lo in range(0, len(self._test_rows), EVAL_CHUNK):
                rows = self._test_rows[lo : lo + EVAL_CHUNK]
                users = {t: torch.from_numpy(v[rows]) for t, v in self.users.items()}
                candidates = torch.from_numpy(self.shard.test_candidates[lo : lo + EVAL_CHUNK].astype(np.int64))
                own = self._client_dense(rows, clusters)
                own_t = None if own is None else {n: torch.from_numpy(np.ascontiguousarray(v)) for n, v in own.items()}
                scores = score_candidates(self.spec, torch_params, users, candidates, own_t).numpy()
                hit, ndcg = rank_metrics(scores, k)
                hits.append(hit)
                ndcgs.append(ndcg)
        cat = lambda parts: np.concatenate(parts) if parts else np.zeros(0)  # noqa: E731
        return self.shard.test_clients, cat(hits), cat(ndcgs)

    def train_pairs(self, params: dict[str, np.ndarray],
                    clusters: Optional[ClusterView] = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """CEAG's pairwise measure on the train data, as the clients report it in training: each
        positive against its r sampled negatives (r = ``negatives_per_positive``), 1 where it
        scores strictly higher, under the model serving the client. The negatives come from a
        stream no training round draws, fixed by the seed. Returns (owner, bit, 1) per pair."""
        per_positive = self.recipe.negatives_per_positive
        n_pos = np.diff(self.shard.indptr)
        rows = np.flatnonzero(n_pos > 0)
        negatives = hashed_negatives(self.seed, TRAIN_PAIRS_ROUND, self.shard.clients[rows], n_pos[rows] * per_positive,
                                     self._positive_keys, self.spec.n_items).astype(np.int64)
        positive_row = np.repeat(rows, n_pos[rows])
        candidates = np.concatenate([self.shard.items[ranges(self.shard.indptr[rows], n_pos[rows])][:, None],
                                     negatives.reshape(-1, per_positive)], axis=1)
        torch_params = {n: torch.from_numpy(v) for n, v in params.items()}
        bits = []
        with torch.no_grad():
            for lo in range(0, len(candidates), EVAL_CHUNK):
                at = positive_row[lo : lo + EVAL_CHUNK]
                users = {t: torch.from_numpy(v[at]) for t, v in self.users.items()}
                own = self._client_dense(at, clusters)
                own_t = None if own is None else {n: torch.from_numpy(np.ascontiguousarray(v)) for n, v in own.items()}
                scores = score_candidates(self.spec, torch_params, users,
                                          torch.from_numpy(candidates[lo : lo + EVAL_CHUNK]), own_t).numpy()
                bits.append((scores[:, :1] > scores[:, 1:]).astype(np.float32).ravel())
        owners = np.repeat(self.shard.clients[positive_row], per_positive)
        bits = np.concatenate(bits) if bits else np.zeros(0, np.float32)
        return owners, bits, np.ones(len(bits), np.float32)

    def retrieval_queries(self, params: dict[str, np.ndarray],
                          clusters: Optional[ClusterView] = None) -> tuple[np.ndarray, np.ndarray]:
        """(clients, query vectors) for the retriever: what each phone would send with a request."""
        own = self._client_dense(np.arange(self.n_clients), clusters)
        return self.shard.clients, retrieval_queries(self.spec, params, self.users, own)

    def save(self, storage: Storage, name: str, round_index: int) -> None:
        """The clients' private vectors (and Ditto personal models), as a phone would keep them."""
        personal = {f"personal.{n}": v for n, v in (self.personal or {}).items()}
        storage.write_npz(name, clients=self.shard.clients, round_index=np.int64(round_index), **self.users,
                          **personal)

    def restore(self, storage: Storage, names: list[str]) -> Optional[int]:
        """Load this worker's clients' vectors from any saved files (whatever worker wrote them);
        returns the round they were saved at, or None when there is nothing to load."""
        saved_round = None
        for name in names:
            saved = storage.read_npz(name)
            clients = saved["clients"]
            mine = np.isin(clients, self.shard.clients)
            rows = self._rows(clients[mine])
            for table in self.users:
                self.users[table][rows] = saved[table][mine]
            for dense in self.personal or {}:
                self.personal[dense][rows] = saved[f"personal.{dense}"][mine]
            saved_round = int(saved["round_index"])
        return saved_round
