"""A worker's clients: shard files, training, evaluation and the private-vector checkpoints."""

from pathlib import Path

import numpy as np
import pytest
import torch

from cluster.fl.recipe import LocalRecipe
from cluster.fl.families.ncf.shard import ncf_shards
from cluster.fl.shard import ClientShard, assign_workers
from cluster.fl.families.ncf.worker import NCFWorkerCore
from cluster.fl.families.ncf.model import NCFSpec
from cluster.fl.families.ncf.net import init_global
from cluster.storage import Storage, StorageError
from cluster.world import build_world
from configs import load_config


def _world(tmp_path: Path):
    cfg = load_config(None, ["data.synthetic.n_users=200", "data.synthetic.n_items=300",
                             "data.synthetic.target_interactions=3000", f"data.cache_dir={tmp_path}"])
    return cfg, build_world(cfg)


def test_shards_partition_clients_by_tier(tmp_path: Path):
    cfg, world = _world(tmp_path)
    pop = world.population
    worker_of_user = assign_workers(pop.tier_of_user, 3, 2)
    assert np.array_equal(worker_of_user // 2, pop.tier_of_user)
    spec = NCFSpec.from_config(cfg.model, world.dataset.n_items)
    shards = list(ncf_shards(pop, world.leave_one_out, spec, 0, worker_of_user, 6))
    held = np.sort(np.concatenate([s.clients for s in shards]))
    assert np.array_equal(held, np.arange(pop.n_clients))
    for shard in shards:
        for row, client in enumerate(shard.clients):
            np.testing.assert_array_equal(
                shard.train[shard.train_indptr[row]:shard.train_indptr[row + 1]], pop.train.items[pop.client_rows(client)])
    shards[0].save(Storage(tmp_path), "s.npz")
    again = ClientShard.load(Storage(tmp_path), "s.npz")
    assert np.array_equal(again.train, shards[0].train) and np.array_equal(again.private0["user_gmf"], shards[0].private0["user_gmf"])
    assert np.array_equal(again.test["candidates"], shards[0].test["candidates"])


def test_worker_trains_evaluates_and_restores_private_vectors(tmp_path: Path):
    cfg, world = _world(tmp_path)
    spec = NCFSpec.from_config(cfg.model, world.dataset.n_items)
    worker_of_user = np.zeros(world.population.n_clients, dtype=np.int64)
    (shard,) = ncf_shards(world.population, world.leave_one_out, spec, 0, worker_of_user, 1)
    recipe = LocalRecipe(1, 1.0, 10.0, 10.0, 4)
    params = {k: v.numpy() for k, v in init_global(spec, torch.Generator().manual_seed(0)).items()}
    worker = NCFWorkerCore(shard, spec, recipe, seed=0)
    clients = shard.clients[[1, 5, 9]]
    result = worker.train(0, clients, params)
    assert result.clients.tolist() == clients.tolist()
    assert not hasattr(result, "new_users"), "private vectors never leave the worker"
    changed = np.flatnonzero((worker.users["user_gmf"] != shard.private0["user_gmf"]).any(axis=1))
    assert changed.tolist() == [1, 5, 9]
    tested, hit, ndcg = worker.evaluate(params)
    assert len(tested) == len(hit) == len(ndcg) == len(shard.test["clients"])
    assert ((0 <= ndcg) & (ndcg <= hit)).all()

    worker.save(Storage(tmp_path), "w.npz", round_index=4)
    fresh = NCFWorkerCore(shard, spec, recipe, seed=0)
    assert fresh.restore(Storage(tmp_path), ["w.npz"]) == 4
    assert np.array_equal(fresh.users["user_gmf"], worker.users["user_gmf"])
    try:
        worker.train(1, np.array([10_000]), params)
    except KeyError as err:
        assert "not held by this worker" in str(err)
    else:
        raise AssertionError("training a foreign client must fail")


def test_a_file_that_is_not_a_client_shard_is_refused_by_name(tmp_path: Path):
    Storage(tmp_path).write_npz("w.npz", clients=np.arange(3))
    with pytest.raises(StorageError, match=r"w\.npz.*not a client shard.*'train'"):
        ClientShard.load(Storage(tmp_path), "w.npz")
