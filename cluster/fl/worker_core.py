"""What one client-worker actor does, whatever the model family, as a plain class: it holds many
simulated phones — their data and what each keeps on the device — and trains or evaluates any
subset of them in one batched call.

``WorkerCore`` owns the device state every family shares: Ditto's personal dense parts, the
private tables a family keeps on the phone (NCF's user vectors; a click model has none), their
checkpoints, the dense part that serves each client (personal, or its Cali3F cluster's) and the
device halves of Cali3F (eq. 4 and re-clustering). A family (``NCFWorkerCore``,
``ClickWorkerCore``) adds how its clients train, how they are evaluated and the vector each
device is clustered by."""

from __future__ import annotations

from dataclasses import replace
from typing import Optional

import numpy as np

from cluster.checkpoint import CheckpointError
from cluster.fl.cali3f import subordinate_user_update
from cluster.fl.clustering import assign_clusters, fixed_point_sums
from cluster.fl.local_sgd import LocalRecipe
from cluster.fl.scaffold import next_client_control
from cluster.fl.shard import ClientShard
from cluster.fl.types import ClientSettings, ClientUpdate, ClusterView
from cluster.storage import Storage


def held_positions(held: np.ndarray, clients: np.ndarray) -> np.ndarray:
    """Positions of ``clients`` in a worker's ascending ``held`` ids; KeyError naming any it lacks."""
    positions = np.minimum(np.searchsorted(held, clients), len(held) - 1)
    if len(clients) and not np.array_equal(held[positions], clients):
        missing = np.setdiff1d(clients, held)
        raise KeyError(f"clients {missing[:5].tolist()} are not held by this worker")
    return positions


class WorkerCore:
    """shard: the family's clients; users[table] (C, d): the private tables, from the shard's
    starting ones; personal[name] (C, *shape): Ditto's personal dense parts, which start
    at w⁰ as the server's model does (``initial_params``), or None without Ditto."""

    def __init__(
        self, shard: ClientShard, spec, recipe: LocalRecipe, seed: int, initial_params: Optional[dict[str, np.ndarray]]
    ):
        self.shard = shard
        self.spec = spec
        self.recipe = recipe
        self.seed = seed
        self.users = {table: start.copy() for table, start in shard.private0.items()}
        self.personal: Optional[dict[str, np.ndarray]] = None
        if initial_params is not None:
            self.personal = {n: np.repeat(initial_params[n][None], self.n_clients, axis=0) for n in spec.dense_shapes()}
        # SCAFFOLD's c_i: one dense part per client, on the device; zero before its first round.
        self.control: Optional[dict[str, np.ndarray]] = (
            {n: np.zeros((self.n_clients, *shape), np.float32) for n, shape in spec.dense_shapes().items()}
            if recipe.control_variates
            else None
        )

    @property
    def n_clients(self) -> int:
        return len(self.shard.clients)

    def _rows(self, clients: np.ndarray) -> np.ndarray:
        return held_positions(self.shard.clients, clients)

    def _served_dense(self, rows: np.ndarray, clusters: Optional[ClusterView]) -> Optional[dict[str, np.ndarray]]:
        """The dense part each client at ``rows`` is served with: personal (Ditto), its
        cluster's (Cali3F), or None (the global one)."""
        if self.personal is not None:
            return {n: v[rows] for n, v in self.personal.items()}
        if clusters is not None:
            cluster_of = clusters.labels[self.shard.clients[rows]]
            return {n: v[cluster_of] for n, v in clusters.dense.items()}
        return None

    # ------------------------------------------------------------------ what a family adds
    def train(
        self,
        round_index: int,
        clients: np.ndarray,
        params: dict[str, np.ndarray],
        settings: Optional[ClientSettings] = None,
    ) -> ClientUpdate:
        """The uploads of ``clients`` after their local training from the global ``params``."""
        raise NotImplementedError

    def evaluate(
        self, params: dict[str, np.ndarray], split: str = "test", clusters: Optional[ClusterView] = None
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(owners, a, b) of ``split`` under the models serving its clients, as the family's
        ``ModelOps.summarize`` reads them."""
        raise NotImplementedError

    def retrieval_queries(
        self, params: dict[str, np.ndarray], clusters: Optional[ClusterView] = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """(clients, query vectors) for the retriever, in a family whose users have one."""
        raise NotImplementedError(f"{type(self).__name__}'s users have no retrieval query vector")

    # ------------------------------------------------------------------ SCAFFOLD device half
    def control_correction(self, rows: np.ndarray, settings) -> Optional[dict[str, np.ndarray]]:
        """c − c_i (C, *shape) for the clients at ``rows``: what SCAFFOLD adds to each local
        gradient of the dense part; None when the round sends no server control variate."""
        if settings is None or settings.control is None:
            return None
        control = self._controls()
        return {n: settings.control[n][None] - control[n][rows] for n in settings.control}

    def step_controls(self, rows: np.ndarray, settings, result):
        """SCAFFOLD (Karimireddy et al. 2020, option II): c_i⁺ = c_i − c + (w − w_i)/(K·η),
        K the local steps and η the dense rate, from the exact local update (before any upload
        compression); keeps c_i⁺ and returns ``result`` with the change c_i⁺ − c_i to upload."""
        if settings is None or settings.control is None:
            return result
        control = self._controls()
        changes = {}
        for name, server in settings.control.items():
            old = control[name][rows]
            new = next_client_control(old, server, result.dense_deltas[name], self.recipe.epochs, self.recipe.lr_dense)
            control[name][rows] = new
            changes[name] = new - old
        return replace(result, control_deltas=changes)

    def _controls(self) -> dict[str, np.ndarray]:
        """The clients' c_i, for a round whose server sends its control variate."""
        if self.control is None:
            raise ValueError(
                "the server sends control variates, but these clients keep none (LocalRecipe.control_variates is off)"
            )
        return self.control

    # ------------------------------------------------------------------ Cali3F device halves
    def shift_subordinates(
        self, delegates: np.ndarray, labels: np.ndarray, mean_update: dict[str, np.ndarray], discount: float
    ) -> None:
        """Eq. 4 on the device: every client here that was not a delegate this round moves its
        user vectors by ``discount`` × its cluster's ``mean_update[table]`` (P, d)."""
        missing = sorted(set(mean_update) - set(self.users))
        if missing:
            raise ValueError(f"these clients keep no user table {missing} to shift (a click model keeps none)")
        rows = np.flatnonzero(~np.isin(self.shard.clients, delegates))
        cluster_of = labels[self.shard.clients[rows]]
        for table, update in mean_update.items():
            self.users[table][rows] = subordinate_user_update(self.users[table][rows], cluster_of, update, discount)

    def _user_matrix(self, params: dict[str, np.ndarray]) -> np.ndarray:
        """(C, f): the vector each device is clustered by."""
        raise NotImplementedError

    def cluster_sums(
        self,
        n_clusters: int,
        centroids: Optional[np.ndarray],
        labels: Optional[np.ndarray],
        params: dict[str, np.ndarray],
    ) -> tuple[np.ndarray, np.ndarray]:
        """This worker's share of a Lloyd step: fixed-point sums (P, f) and counts (P,) of its
        clients' vectors per cluster, clusters given (``labels`` (n_users,)) or nearest to
        ``centroids`` (P, f)."""
        users = self._user_matrix(params)
        if labels is not None:
            mine = labels[self.shard.clients]
        elif centroids is not None:
            mine = assign_clusters(users, centroids)
        else:
            raise ValueError("cluster_sums needs the clusters (labels) or the centroids to assign them by")
        return fixed_point_sums(users, mine, n_clusters)

    def assign_clusters(self, centroids: np.ndarray, params: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """(clients, nearest centroid of each): what each device reports after re-clustering."""
        return self.shard.clients, assign_clusters(self._user_matrix(params), centroids)

    # ------------------------------------------------------------------ checkpoints
    def save(self, storage: Storage, name: str, round_index: int) -> None:
        """The clients' private tables, Ditto personal models and SCAFFOLD control variates, as a
        phone would keep them; with none, nothing is private (the global model is in the
        aggregator's checkpoint)."""
        if not self.users and self.personal is None and self.control is None:
            return
        personal = {f"personal.{n}": v for n, v in (self.personal or {}).items()}
        control = {f"control.{n}": v for n, v in (self.control or {}).items()}
        storage.write_npz(
            name,
            clients=self.shard.clients,
            round_index=np.asarray(round_index, np.int64),
            **self.users,
            **personal,
            **control,
        )

    def restore(self, storage: Storage, names: list[str]) -> Optional[int]:
        """Load this worker's clients' device state from any saved files (whatever worker wrote
        them); returns the round they were saved at, or None when there is nothing to load."""
        if not self.users and self.personal is None and self.control is None:
            return None
        saved_round = None
        for name in names:
            saved = storage.read_npz(name)
            try:
                mine = np.isin(saved["clients"], self.shard.clients)
                rows = self._rows(saved["clients"][mine])
                for table in self.users:
                    self.users[table][rows] = saved[table][mine]
                for dense, personal in (self.personal or {}).items():
                    personal[rows] = saved[f"personal.{dense}"][mine]
                for dense, control in (self.control or {}).items():
                    control[rows] = saved[f"control.{dense}"][mine]
                saved_round = int(saved["round_index"])
            except KeyError as exc:  # a file of another model, or not a worker's at all
                raise CheckpointError(f"{storage.describe(name)}: checkpoint arrays missing ({exc})") from None
        return saved_round
