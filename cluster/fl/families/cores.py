"""The device half of whichever family a model belongs to. A module of its own, so that importing
``cluster.fl.families`` (the aggregator does, for ``ModelOps``) loads no torch."""

from __future__ import annotations

from cluster.fl.families.click.worker import ClickWorkerCore
from cluster.fl.families.ncf.worker import NCFWorkerCore
from cluster.fl.local_sgd import LocalRecipe
from cluster.fl.shard import ClientShard
from cluster.fl.worker_core import WorkerCore
from cluster.fl.families.click.model import ClickSpec
from cluster.fl.families.ncf.model import NCFSpec


def worker_core(shard: ClientShard, spec: NCFSpec | ClickSpec, recipe: LocalRecipe, seed: int) -> WorkerCore:
    if isinstance(spec, ClickSpec):
        return ClickWorkerCore(shard, spec, recipe, seed)
    return NCFWorkerCore(shard, spec, recipe, seed)
