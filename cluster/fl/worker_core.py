"""What one client-worker actor does, whatever the model family and strategy, as a plain class: it
holds many simulated phones — their data and what each keeps on the device — and trains or
evaluates any subset of them in one batched call.

``WorkerCore`` owns the device state every family shares: the private tables a family keeps on the
phone (``users``; a family may keep none), the strategy's per-client arrays (``state``, from its
``DeviceHalf``), their checkpoints, and the dense part that serves each client. A family
(``families/<name>/worker.py``) adds how its clients train (a ``LocalPass`` the strategy's device
half may run again), how they are evaluated and the vector each device is clustered by."""

from __future__ import annotations

from typing import Any, Optional

import numpy as np

from cluster.checkpoint import CheckpointError
from cluster.fl.recipe import LocalRecipe
from cluster.fl.shard import ClientShard
from cluster.fl.device import DeviceHalf
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
    starting ones; state: the strategy's per-client arrays (``device.initial_state``)."""

    def __init__(
        self, shard: ClientShard, spec: Any, recipe: LocalRecipe, seed: int, device: Optional[DeviceHalf] = None
    ):
        self.shard = shard
        self.spec = spec
        self.recipe = recipe
        self.seed = seed
        self.device = device if device is not None else DeviceHalf()  # None: the plain strategy's
        self.users = {table: start.copy() for table, start in shard.private0.items()}
        self.state = self.device.initial_state(self)

    def fresh(self) -> WorkerCore:
        """This worker's clients as they were before any round."""
        return type(self)(self.shard, self.spec, self.recipe, self.seed, self.device)

    @property
    def n_clients(self) -> int:
        return len(self.shard.clients)

    def _rows(self, clients: np.ndarray) -> np.ndarray:
        return held_positions(self.shard.clients, clients)

    def _served_dense(self, rows: np.ndarray, clusters: Optional[ClusterView]) -> Optional[dict[str, np.ndarray]]:
        """The dense part each client at ``rows`` is served with, or None (the global one)."""
        return self.device.served_dense(self, rows, clusters)

    def device_step(self, step: str, *args: Any) -> Any:
        """The strategy's device step ``step`` on these clients (``WorkerPool.device_step``)."""
        if step.startswith("_") or not callable(getattr(self.device, step, None)):
            raise ValueError(f"{type(self.device).__name__} has no device step {step!r}")
        return getattr(self.device, step)(self, *args)

    def upload(
        self,
        round_index: int,
        clients: np.ndarray,
        params: dict[str, np.ndarray],
        settings: Optional[ClientSettings] = None,
        guard: Any = None,
    ) -> Any:
        """What leaves the phones of ``clients`` this round: their uploads (``train``) as the
        round's ``guard`` lets them out (masked for secure aggregation, noised for local DP)."""
        update = self.train(round_index, clients, params, settings)
        return update if guard is None else guard.apply(update, params, self.seed)

    # ------------------------------------------------------------------ what a family adds
    def initial_params(self) -> dict[str, np.ndarray]:
        """w⁰, as the server draws it from the seed (a strategy's device state may start there)."""
        raise NotImplementedError

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

    def clustering_vectors(self, params: dict[str, np.ndarray]) -> np.ndarray:
        """(C, f): the vector each device is clustered by (``params``: the global model)."""
        raise NotImplementedError

    # ------------------------------------------------------------------ checkpoints
    def save(self, storage: Storage, name: str, round_index: int) -> None:
        """The clients' private tables and the strategy's device state, as a phone would keep
        them; with none, nothing is private (the global model is in the aggregator's checkpoint)."""
        if not self.users and not self.state:
            return
        storage.write_npz(
            name, clients=self.shard.clients, round_index=np.asarray(round_index, np.int64), **self.users, **self.state
        )

    def restore(self, storage: Storage, names: list[str]) -> Optional[int]:
        """Load this worker's clients' device state from any saved files (whatever worker wrote
        them); returns the round they were saved at, or None when there is nothing to load."""
        if not self.users and not self.state:
            return None
        saved_round = None
        for name in names:
            saved = storage.read_npz(name)
            try:
                mine = np.isin(saved["clients"], self.shard.clients)
                rows = self._rows(saved["clients"][mine])
                for key, values in (*self.users.items(), *self.state.items()):
                    values[rows] = saved[key][mine]
                saved_round = int(saved["round_index"])
            except KeyError as exc:  # a file of another model or strategy, or not a worker's at all
                raise CheckpointError(f"{storage.describe(name)}: checkpoint arrays missing ({exc})") from None
        return saved_round
