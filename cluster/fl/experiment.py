"""An experiment built from its config before any Ray process starts: the world, the model
family's setup (spec, local-training recipe, server-side ops), what the server knows of the fleet,
and which worker holds which client. Pure objects only, so the actor path (``jobs/fl_sim.py``) and
the in-process path (``cluster/fl/inprocess.py``) build it alike. Nothing here knows which family
or strategy it runs: ``family_of`` and the strategy's own hooks do."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from cluster.fairness.reference import reference_accuracy
from cluster.fl.availability import windows_for
from cluster.fl.families import family_of
from cluster.fl.families.base import Family, ModelOps, WorkerSetup
from cluster.fl.recipe import LocalRecipe
from cluster.fl.server_core import FleetView, ServerSetup
from cluster.fl.shard import ClientShard, assign_workers
from cluster.fl.strategies import check_device_state, client_metadata, device_half
from cluster.storage import Storage
from cluster.world import World, build_world
from configs import SimConfig


@dataclass
class Experiment:
    """Everything built before Ray starts: pure objects only. ``setup`` is the family's own
    (``Family.setup``): spec, recipe and ops, and whatever its shards are cut from."""

    cfg: SimConfig
    world: World
    family: Family
    setup: Any
    fleet: FleetView
    worker_of_user: np.ndarray
    n_workers: int

    @property
    def spec(self) -> Any:
        return self.setup.spec

    @property
    def recipe(self) -> LocalRecipe:
        return self.setup.recipe

    @property
    def ops(self) -> ModelOps:
        return self.setup.ops

    def shards(self) -> Iterator[ClientShard]:
        """Each worker's clients, in worker order, built one at a time (a driver that saves each
        and lets it go never holds them all)."""
        return self.family.shards(self.setup, self.worker_of_user, self.n_workers)

    def worker_setup(self) -> WorkerSetup:
        """What every client worker builds its core from, besides its shard."""
        return WorkerSetup(self.family, self.spec, self.recipe, self.cfg.seed, device_half(self.cfg.fl.strategy))

    def server_setup(self) -> ServerSetup:
        """What the server and its round loop are built from."""
        return ServerSetup(self.cfg.fl, self.ops, self.fleet, self.cfg.seed, self.worker_of_user)

    @property
    def has_retrieval_queries(self) -> bool:
        return self.family.has_retrieval_queries(self.cfg.model.kind)


def _read_trace(location: str):
    """An availability trace through the storage layer (a path, NFS mount or object-store URI)."""
    trace = Storage(location)
    return trace.read_parquet(), trace.describe()


def build(cfg: SimConfig, progress: bool = False) -> Experiment:
    world = build_world(cfg, progress=progress)
    population = world.population
    n_workers = population.tiers.n_tiers * cfg.fl.runtime.workers_per_tier
    worker_of_user = assign_workers(population.tier_of_user, population.tiers.n_tiers, cfg.fl.runtime.workers_per_tier)
    reference = None
    if cfg.fl.fairness.kind == "ceag":
        reference = reference_accuracy(
            cfg.fl.fairness,
            population.tiers.names,
            {"model": cfg.model.kind, "tier_mapping": cfg.tier_mapping.mapping, "seed": cfg.seed},
        )
    family = family_of(cfg.model.kind)
    setup = family.setup(cfg, world)
    check_device_state(cfg.fl.strategy, setup.spec, int(np.bincount(worker_of_user, minlength=n_workers).max()))
    fleet = FleetView(
        population.tiers,
        population.tier_of_user,
        setup.train_samples,
        reference,
        metadata=client_metadata(cfg.fl.strategy, world),
        train_pairs=setup.train_pairs,
        availability=windows_for(
            cfg.fl.availability, population.tier_of_user, population.tiers.names, cfg.seed, _read_trace
        ),
    )
    return Experiment(cfg, world, family, setup, fleet, worker_of_user, n_workers)
