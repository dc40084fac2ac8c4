"""An experiment built from its config before any Ray process starts: the world, the model's
spec and local-training recipe, the model family's server-side ops, what the server knows of the
fleet, and which worker holds which client. Pure objects only, so the actor path
(``jobs/fl_sim.py``) and the in-process path (``cluster/fl/inprocess.py``) build it alike."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Optional

import numpy as np

from cluster.fairness.reference import reference_accuracy
from cluster.fl.families.click.setup import ClickSetup, click_setup
from cluster.fl.clustering import encode_metadata
from cluster.fl.local_sgd import LocalRecipe
from cluster.fl.strategies import check_device_state, recipe_settings
from cluster.fl.families.base import ModelOps
from cluster.fl.families.ncf.ops import NCFOps
from cluster.fl.server_core import FleetView
from cluster.fl.families.click.shard import click_shards
from cluster.fl.families.ncf.shard import ncf_shards
from cluster.fl.shard import ClientShard, assign_workers
from cluster.fl.families.click.model import ClickSpec
from cluster.fl.families.ncf.model import NCFSpec
from cluster.world import World, build_world
from configs import ConfigError, SimConfig


@dataclass
class Experiment:
    """Everything built before Ray starts: pure objects only."""

    cfg: SimConfig
    world: World
    spec: NCFSpec | ClickSpec
    recipe: LocalRecipe
    ops: ModelOps
    fleet: FleetView
    worker_of_user: np.ndarray
    n_workers: int
    click: Optional[ClickSetup] = None

    def shards(self) -> Iterator[ClientShard]:
        """Each worker's clients, in worker order, built one at a time (a driver that saves each
        and lets it go never holds them all)."""
        if self.click is not None:
            return click_shards(self.click, self.worker_of_user, self.n_workers)
        # build() gives a click setup to every click model, so the spec here is NCF's.
        assert isinstance(self.spec, NCFSpec), f"a {type(self.spec).__name__} without its click setup"
        return ncf_shards(
            self.world.population,
            self.world.leave_one_out,
            self.spec,
            self.cfg.seed,
            self.worker_of_user,
            self.n_workers,
        )


def recipe_from(cfg: SimConfig) -> LocalRecipe:
    fl = cfg.fl
    return LocalRecipe(
        epochs=fl.local_epochs,
        lr_dense=fl.client_lr,
        lr_item=fl.client_lr * fl.item_lr_scale,
        lr_user=fl.client_lr * fl.user_lr_scale,
        negatives_per_positive=fl.negatives_per_positive,
        loss_reduction=fl.loss_reduction,
        ranking_bits=fl.fairness.kind == "ceag",
        **recipe_settings(fl.strategy),
    )


def cali3f_metadata(cfg: SimConfig, world: World) -> Optional[np.ndarray]:
    """The one-hot user columns Cali3F's first clusters come from (None for other strategies)."""
    strategy = cfg.fl.strategy
    if strategy.kind != "cali3f":
        return None
    features = world.dataset.user_features
    missing = sorted(set(strategy.metadata) - set(features.names()))
    if missing:
        raise ConfigError(
            f"fl.strategy.metadata names {missing}, which the dataset {world.dataset.name!r} lacks "
            f"(its user columns: {features.names()})"
        )
    if strategy.n_clusters > world.population.n_clients:
        raise ConfigError(
            f"fl.strategy.n_clusters={strategy.n_clusters} exceeds the {world.population.n_clients} clients"
        )
    return encode_metadata(features, strategy.metadata)


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
    clients_per_worker = int(np.bincount(worker_of_user, minlength=n_workers).max())
    if cfg.model.is_click:
        click = click_setup(cfg, world)
        check_device_state(cfg.fl.strategy, click.spec, clients_per_worker)
        fleet = FleetView(
            population.tiers,
            population.tier_of_user,
            click.train_samples,
            reference,
            metadata=cali3f_metadata(cfg, world),
            train_pairs=click.train_pairs,
        )
        return Experiment(cfg, world, click.spec, click.recipe, click.ops, fleet, worker_of_user, n_workers, click)
    spec = NCFSpec.from_config(cfg.model, world.dataset.n_items)
    check_device_state(cfg.fl.strategy, spec, clients_per_worker)
    fleet = FleetView(
        population.tiers,
        population.tier_of_user,
        population.samples_per_client(),
        reference,
        metadata=cali3f_metadata(cfg, world),
    )
    ops = NCFOps(spec, cfg.fl.negatives_per_positive, upload=cfg.fl.upload)
    return Experiment(cfg, world, spec, recipe_from(cfg), ops, fleet, worker_of_user, n_workers)
