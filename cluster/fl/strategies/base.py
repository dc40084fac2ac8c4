"""The contract a federated strategy fulfils, in two halves, and the plain averaging every
strategy starts from.

The server half (``Strategy``) decides which clients a round selects, what each is told to train
with beyond the model family's own settings, how the kept clients' merged uploads change the
global model (besides the averaging step the server always takes on what is left), what runs on
the devices after the models are updated, which model serves each client, and what it costs on
the virtual clock. The device half (``DeviceHalf``) is what the worker core calls around a
client's local training: the per-client state the strategy keeps on the phone (checkpointed with
the worker), a correction of the local gradient, the steps after the local pass, the dense part
that serves each client, and named device steps the server half asks for through
``WorkerPool.device_step``.

A strategy is one folder under ``cluster/fl/strategies/`` whose ``__init__.py`` exports
``STRATEGY`` (a ``StrategyPlugin``); the registry finds it by ``fl.strategy.kind``. The server,
the round loop, the worker core and the families never ask a strategy for its name."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Optional, Protocol

import numpy as np

from cluster.fl.device import DeviceHalf
from cluster.fl.selection import Sampler
from cluster.fl.types import ClientSettings, ClientUpdate, ClusterView
from cluster.fl.worker_pool import WorkerPool


@dataclass(frozen=True)
class ExtraPayload:
    """What a strategy adds to each selected client's round on top of the model family's
    FedAvg payload: float32 entries uploaded, bytes downloaded, tensors uploaded."""

    upload_entries: int = 0
    download_bytes: int = 0
    tensors: int = 0


class Strategy(Protocol):
    # A client's local passes relative to FedAvg's one (Ditto and Cali3F train two models).
    compute_multiplier: float

    def select(self, k: int) -> np.ndarray: ...

    def configure(self, clients: np.ndarray, settings: Optional[ClientSettings]) -> Optional[ClientSettings]:
        """The model family's ``settings`` for ``clients``, with what the strategy adds."""

    def aggregate(
        self, merged: ClientUpdate, delta: dict[str, np.ndarray], params: dict[str, np.ndarray]
    ) -> dict[str, np.ndarray]:
        """Apply the strategy's own server update to ``params`` in place; return what is left
        of the averaged ``delta`` for the server optimizer."""

    def after_round(self, pool: WorkerPool, rounds_done: int, params: dict[str, np.ndarray]) -> dict: ...

    def serving_view(self) -> Optional[ClusterView]:
        """What serves each client beyond the global model (per-cluster dense parts), or None."""

    def extra_payload(self, spec: Any) -> ExtraPayload: ...

    def state_dict(self) -> Optional[dict]: ...

    def load_state_dict(self, state: Optional[dict]) -> None: ...


@dataclass(frozen=True)
class StrategyContext:
    """What a strategy's server half is built from: the model family's ``ops``, the initial global
    ``params``, the server's ``fleet`` (``FleetView``), who may be selected (``eligible`` (n,)),
    the server's ``sampler`` (epoch-wise uniform, or Poisson under differential privacy), the
    clients' learning rate and the run's seed."""

    ops: Any
    params: dict[str, np.ndarray]
    fleet: Any
    eligible: np.ndarray
    sampler: Sampler
    client_lr: float
    seed: int

    def dense_part(self) -> dict[str, np.ndarray]:
        """The initial global model's dense tensors."""
        return {name: self.params[name] for name in self.ops.spec.dense_shapes()}


class AveragingStrategy:
    """The server half every strategy starts from (McMahan et al. 2017): epoch-wise uniform
    selection, the global model moves by the sample-weighted mean of the clients' updates, every
    client is served the global model."""

    compute_multiplier = 1.0

    def __init__(self, sampler: Sampler):
        self.sampler = sampler

    def select(self, k: int) -> np.ndarray:
        return self.sampler.draw(k)

    def configure(self, clients: np.ndarray, settings: Optional[ClientSettings]) -> Optional[ClientSettings]:
        return settings

    def aggregate(
        self, merged: ClientUpdate, delta: dict[str, np.ndarray], params: dict[str, np.ndarray]
    ) -> dict[str, np.ndarray]:
        return delta

    def after_round(self, pool: WorkerPool, rounds_done: int, params: dict[str, np.ndarray]) -> dict:
        return {}

    def serving_view(self) -> None:
        return None

    def extra_payload(self, spec) -> ExtraPayload:
        return ExtraPayload()

    def state_dict(self) -> Optional[dict]:
        return None  # the sampler's state is the server's

    def load_state_dict(self, state: Optional[dict]) -> None:
        pass


@dataclass(frozen=True)
class StrategyPlugin:
    """A strategy as the registry knows it: its title, how to build its server half from ``fl.strategy`` and
    a ``StrategyContext``, and, where the strategy has them, its device half, what it changes in
    every client's local recipe (``LocalRecipe`` fields), a check that its device state fits a
    worker, and the per-client columns its server half reads (``FleetView.metadata``)."""

    title: str  # how a results page names it
    server: Callable[[Any, StrategyContext], Strategy]
    device: Callable[[Any], DeviceHalf] = lambda cfg: DeviceHalf()
    recipe_settings: Callable[[Any], dict] = lambda cfg: {}
    check_device_state: Callable[[Any, Any, int], None] = lambda cfg, spec, clients_per_worker: None
    client_metadata: Callable[[Any, Any], Optional[np.ndarray]] = lambda cfg, world: None
