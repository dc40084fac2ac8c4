"""The device half of a federated strategy, as the worker core calls it around its clients' local
training, and what it may ask of the core and of the family's local pass. Its own module, below
both the worker core and the strategies, so neither imports the other to know it."""

from __future__ import annotations

from typing import Any, Optional, Protocol

import numpy as np

from cluster.fl.recipe import LocalRecipe
from cluster.fl.shard import ClientShard
from cluster.fl.types import ClientSettings, ClientUpdate, ClusterView


class ClientDevices(Protocol):
    """What a device half reads and changes of the phones a worker holds (``WorkerCore``)."""

    shard: ClientShard
    spec: Any
    recipe: LocalRecipe
    users: dict[str, np.ndarray]
    state: dict[str, np.ndarray]

    @property
    def n_clients(self) -> int: ...

    def initial_params(self) -> dict[str, np.ndarray]: ...

    def clustering_vectors(self, params: dict[str, np.ndarray]) -> np.ndarray: ...


class LocalPass(Protocol):
    """One round's local training of some clients, as a family runs it; what a strategy's device
    half may ask of it after the clients' first pass."""

    def pass_at(self, dense: dict[str, np.ndarray]) -> ClientUpdate:
        """The same clients' pass from the round's start, each with its own ``dense`` part (C, *shape)
        in place of the global one; the user vectors they keep are this pass's."""

    def personal_step(self, personal: dict[str, np.ndarray], lam: float) -> dict[str, np.ndarray]:
        """Each client's personal dense part (C, *shape) after its proximal steps (strength ``lam``)
        toward its data and the global model, the shared tables held fixed."""


class DeviceHalf:
    """What the worker core calls around its clients' local training; the plain strategy keeps
    nothing on the device and changes nothing. A strategy's device half overrides what it needs;
    it is a small picklable object, built once per run and handed to every worker."""

    def initial_state(self, core: ClientDevices) -> dict[str, np.ndarray]:
        """Per-client arrays (C, *shape) this strategy keeps on the devices of ``core``; saved and
        restored with the worker's checkpoint under these names."""
        return {}

    def correction(self, core: ClientDevices, rows: np.ndarray, settings: Optional[ClientSettings]):
        """What to add to each local gradient of the dense part (C, *shape) per name, or None."""
        return None

    def after_local(
        self, core: ClientDevices, local: LocalPass, rows: np.ndarray, settings: Optional[ClientSettings], result
    ) -> ClientUpdate:
        """The clients' upload after their local pass (``result``), with whatever the strategy
        does next on the device (``local`` runs further passes over the same clients)."""
        return result

    def served_dense(
        self, core: ClientDevices, rows: np.ndarray, clusters: Optional[ClusterView]
    ) -> Optional[dict[str, np.ndarray]]:
        """The dense part that serves each client at ``rows``, or None for the global one."""
        return None
