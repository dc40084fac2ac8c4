"""The contract a federated strategy fulfils for the round loop, and FedAvg, the plain one.

A strategy decides which clients a round selects, what each is told to train with beyond the
model family's own settings, how the kept clients' merged uploads change the global model
(besides the FedAvg step the server always takes on what is left), what runs on the devices
after the models are updated, which model serves each client, and what it costs on the
virtual clock. The server never asks a strategy for its name."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional, Protocol

import numpy as np

from cluster.fl.selection import EpochSampler
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
        of FedAvg's ``delta`` for the server optimizer."""

    def after_round(self, pool: WorkerPool, rounds_done: int, params: dict[str, np.ndarray]) -> dict: ...

    def serving_view(self) -> Optional[ClusterView]:
        """What serves each client beyond the global model (Cali3F's clusters), or None."""

    def extra_payload(self, spec: Any) -> ExtraPayload: ...

    def state_dict(self) -> Optional[dict]: ...

    def load_state_dict(self, state: Optional[dict]) -> None: ...


class FedAvg:
    """McMahan et al. 2017: epoch-wise uniform selection, the global model is the sample-weighted
    mean of the clients' updates, every client is served the global model."""

    compute_multiplier = 1.0

    def __init__(self, sampler: EpochSampler):
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
