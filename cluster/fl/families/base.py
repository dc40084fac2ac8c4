"""What the engine needs to know about a model family, behind two interfaces.

``Family`` is the plug-in the experiment is built from: which ``model.kind`` values it serves, its
setup from the config (``FamilySetup``: spec, local-training recipe, ``ModelOps``, what the server
knows of each client's data), each worker's shard, the worker core that trains on the device, and
the result tables a run writes besides the common ones. ``ModelOps`` is its server half: initial
global parameters, what a client's round costs (work, bytes down, bytes up), the settings a client
trains with, how uploads merge and average, and how evaluations summarize.

Each family is a folder here (``ncf/``, ``click/``) whose ``__init__.py`` exports ``FAMILY``; the
registry (``cluster/fl/families/__init__.py``) finds them by folder, so no other code names one.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Optional, Protocol

import numpy as np

from cluster.fl.clock import RoundCosts
from cluster.fl.shard import ClientShard
from cluster.fl.strategies.base import DeviceHalf, ExtraPayload
from cluster.fl.types import ClientSettings, ClientUpdate
from cluster.tiers.optimizations import TierPlan

if TYPE_CHECKING:
    import pyarrow as pa

    from cluster.fl.recipe import LocalRecipe
    from cluster.fl.worker_core import WorkerCore
    from cluster.world import World
    from configs.schema import SimConfig


NOTHING_EXTRA = ExtraPayload()


class ModelSpec(Protocol):
    """The shape of a model, as the engine reads it: which tensors are dense (FedAvg'd whole,
    personal or per cluster), which are embedding tables of items or of users, and their sizes."""

    @property
    def kind(self) -> str: ...

    @property
    def dim(self) -> int: ...

    @property
    def item_tables(self) -> tuple[str, ...]: ...

    @property
    def user_tables(self) -> tuple[str, ...]: ...

    def dense_shapes(self) -> dict[str, tuple[int, ...]]: ...

    def dense_bytes(self) -> int: ...


class ModelOps(Protocol):
    # Read-only, so an implementation's narrower field (``NCFOps.spec: NCFSpec``) fulfils it.
    @property
    def spec(self) -> ModelSpec: ...

    @property
    def metric_names(self) -> tuple[str, ...]:
        """The quality measures its test evaluation reports, the headline one first."""

    def init_params(self, seed: int) -> dict[str, np.ndarray]: ...

    def round_costs(
        self,
        clients: np.ndarray,
        tiers: np.ndarray,
        samples: np.ndarray,
        plan: TierPlan,
        extra: ExtraPayload,
        passes: float,
    ) -> RoundCosts:
        """``extra`` and ``passes``: what the strategy adds to each client's payload and work."""

    def client_settings(self, tiers: np.ndarray, plan: TierPlan) -> Optional[ClientSettings]:
        """What each of the round's clients (their tiers (C,)) trains with under ``plan``, or None
        when nothing differs from the recipe."""

    def merge(self, results: list[ClientUpdate]) -> ClientUpdate:
        """The workers' uploads as one, in client-id order."""

    def average(self, merged: ClientUpdate, weights: Optional[np.ndarray] = None) -> dict[str, np.ndarray]:
        """The averaged update of every tensor the merged uploads moved."""

    def held_entries(self, width: float) -> dict[str, np.ndarray]:
        """Which entries of each dense tensor (bool, its shape) a sub-model of ``width`` holds
        (RF²'s Channel; every entry at width 1)."""

    def upload_stats(self, merged: ClientUpdate) -> dict: ...

    def fastagg(self, merged: ClientUpdate) -> dict[str, np.ndarray]:
        """Cali3F's FastAgg (eq. 5) of the merged uploads' embedding rows: the update of each
        shared embedding table, to add as is."""

    def summarize(
        self,
        owners: np.ndarray,
        a: np.ndarray,
        b: np.ndarray,
        tier_of_user: np.ndarray,
        tier_names: tuple[str, ...],
        split: str = "test",
    ) -> dict[str, float]: ...


class FamilySetup(Protocol):
    """What a family builds from the config before any Ray process starts.

    train_samples (n_users,): what a client's round is weighed and priced by; train_pairs
    (n_users,): its (positive, negative) pairs where the family counts them (else None)."""

    @property
    def spec(self) -> ModelSpec: ...

    @property
    def recipe(self) -> LocalRecipe: ...

    @property
    def ops(self) -> ModelOps: ...

    @property
    def train_samples(self) -> np.ndarray: ...

    @property
    def train_pairs(self) -> Optional[np.ndarray]: ...


@dataclass(frozen=True)
class RunTables:
    """What a finished run hands its family for the family's own result tables: the global
    model, the last test evaluation per client (in id order), each worker's retrieval queries
    (or None), and the identity every row carries."""

    params: dict[str, np.ndarray]
    client_metrics: tuple[np.ndarray, np.ndarray, np.ndarray]
    queries: Optional[list[tuple[np.ndarray, np.ndarray]]]
    config_hash: str
    seed: int


class Family(Protocol):
    name: str
    model_kinds: tuple[str, ...]
    # Whether an in-process grid evaluates on fl.eval_every as well as at the end.
    evaluates_during_grids: bool
    # The quality measures its test evaluation reports (``ModelOps.metric_names``), headline first.
    metric_names: tuple[str, ...]

    def setup(self, cfg: SimConfig, world: World) -> FamilySetup: ...

    def shards(self, setup: Any, worker_of_user: np.ndarray, n_workers: int) -> Iterator[ClientShard]:
        """Each worker's clients, in worker order, built one at a time (a driver that saves each
        and lets it go never holds them all)."""

    def worker_core(
        self, shard: ClientShard, spec: Any, recipe: LocalRecipe, seed: int, device: DeviceHalf
    ) -> WorkerCore:
        """The device half over ``shard`` (loads torch: called inside a worker, never by the server)."""

    def has_retrieval_queries(self, model_kind: str) -> bool:
        """Whether a model of ``model_kind`` gives each user a query vector the retriever ranks by."""

    def result_tables(self, setup: Any, world: World, run: RunTables) -> dict[str, pa.Table]:
        """The family's own tables of a finished run, by file name (e.g. per-client quality)."""


@dataclass(frozen=True)
class WorkerSetup:
    """What every client worker of a run builds its core from, besides its own shard: the family,
    its spec and recipe, the seed, and the strategy's device half."""

    family: Family
    spec: Any
    recipe: LocalRecipe
    seed: int
    device: DeviceHalf

    def core(self, shard: ClientShard) -> WorkerCore:
        return self.family.worker_core(shard, self.spec, self.recipe, self.seed, self.device)
