"""Everything an NCF run builds before Ray starts: the model spec, the local recipe (one rate per
kind of tensor), the ops the server prices rounds with, and what each worker's shard is cut from."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Optional

import numpy as np

from cluster.data.splits import LeaveOneOut
from cluster.fl.families.ncf.model import NCFSpec
from cluster.fl.families.ncf.ops import NCFOps
from cluster.fl.families.ncf.shard import ncf_shards
from cluster.fl.recipe import LocalRecipe
from cluster.fl.shard import ClientShard
from cluster.fl.strategies import recipe_settings
from cluster.tiers.population import Population
from cluster.world import World
from configs.schema import SimConfig


@dataclass(frozen=True)
class NCFSetup:
    """train_samples (n_users,): each client's train positives; NCF counts no pairs up front."""

    spec: NCFSpec
    recipe: LocalRecipe
    ops: NCFOps
    population: Population
    leave_one_out: LeaveOneOut
    seed: int
    train_samples: np.ndarray
    train_pairs: Optional[np.ndarray] = None

    def shards(self, worker_of_user: np.ndarray, n_workers: int) -> Iterator[ClientShard]:
        return ncf_shards(self.population, self.leave_one_out, self.spec, self.seed, worker_of_user, n_workers)


def ncf_recipe(cfg: SimConfig) -> LocalRecipe:
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


def ncf_setup(cfg: SimConfig, world: World) -> NCFSetup:
    spec = NCFSpec.from_config(cfg.model, world.dataset.n_items)
    population = world.population
    return NCFSetup(
        spec=spec,
        recipe=ncf_recipe(cfg),
        ops=NCFOps(spec, cfg.fl.negatives_per_positive, upload=cfg.fl.upload),
        population=population,
        leave_one_out=world.leave_one_out,
        seed=cfg.seed,
        train_samples=population.samples_per_client(),
    )
