"""The click family as the engine's plug-in: DLRM / DIN on RF²'s click labels, AUC per tier,
every parameter uploaded whole, no private table on the phone."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pyarrow as pa

from cluster.fl.families.base import RunTables
from cluster.fl.families.click.ops import ClickOps
from cluster.fl.families.click.setup import ClickSetup, click_setup
from cluster.fl.families.click.shard import click_shards
from cluster.fl.shard import ClientShard
from cluster.world import World
from configs.schema import SimConfig


class ClickFamily:
    name = "click"
    model_kinds = ("dlrm", "din")
    # A grid reads the final AUC only, and an evaluation scores every held-out row.
    evaluates_during_grids = False
    metric_names = ClickOps.metric_names

    def setup(self, cfg: SimConfig, world: World) -> ClickSetup:
        return click_setup(cfg, world)

    def shards(self, setup: ClickSetup, worker_of_user: np.ndarray, n_workers: int) -> Iterator[ClientShard]:
        return click_shards(setup, worker_of_user, n_workers)

    def worker_core(self, shard: ClientShard, spec, recipe, seed: int, device):
        from cluster.fl.families.click.worker import ClickWorkerCore  # torch: only a worker loads it

        return ClickWorkerCore(shard, spec, recipe, seed, device)

    def has_retrieval_queries(self, model_kind: str) -> bool:
        return False  # no user vector: a click model scores (user, item) pairs through an MLP

    def result_tables(self, setup: ClickSetup, world: World, run: RunTables) -> dict[str, pa.Table]:
        return {}  # quality is AUC per tier, in the common tables


FAMILY = ClickFamily()
