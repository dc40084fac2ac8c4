"""The NCF family as the engine's plug-in: GMF / MLP / NeuMF on implicit feedback, leave-one-out
HR/NDCG, a private user vector on every phone."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pyarrow as pa

from cluster.fl.families.base import RunTables
from cluster.fl.families.ncf.ops import NCFOps
from cluster.fl.families.ncf.results import ncf_result_tables
from cluster.fl.families.ncf.setup import NCFSetup, ncf_setup
from cluster.fl.shard import ClientShard
from cluster.world import World
from configs.schema import SimConfig


class NCFFamily:
    name = "ncf"
    model_kinds = ("gmf", "mlp", "neumf")
    evaluates_during_grids = True
    metric_names = NCFOps.metric_names

    def setup(self, cfg: SimConfig, world: World) -> NCFSetup:
        return ncf_setup(cfg, world)

    def shards(self, setup: NCFSetup, worker_of_user: np.ndarray, n_workers: int) -> Iterator[ClientShard]:
        return setup.shards(worker_of_user, n_workers)

    def worker_core(self, shard: ClientShard, spec, recipe, seed: int, device):
        from cluster.fl.families.ncf.worker import NCFWorkerCore  # torch: only a worker loads it

        return NCFWorkerCore(shard, spec, recipe, seed, device)

    def has_retrieval_queries(self, model_kind: str) -> bool:
        # GMF alone scores by an inner product, which the retriever's index ranks by.
        return model_kind == "gmf"

    def result_tables(self, setup: NCFSetup, world: World, run: RunTables) -> dict[str, pa.Table]:
        return ncf_result_tables(setup.spec.item_tables, world, run)


FAMILY = NCFFamily()
