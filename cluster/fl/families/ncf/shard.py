"""The clients of one NCF worker as a ``ClientShard``: each client's positives as its examples,
its leave-one-out candidates as its test, its starting private user vectors."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from cluster.arrays import select_clients
from cluster.data.splits import LeaveOneOut
from cluster.fl.shard import ClientShard
from cluster.fl.families.ncf.model import NCFSpec, init_users
from cluster.tiers.population import Population


def ncf_shards(
    population: Population, loo: LeaveOneOut, spec: NCFSpec, seed: int, worker_of_user: np.ndarray, n_workers: int
) -> Iterator[ClientShard]:
    """The NCF shards one at a time: positives as examples, leave-one-out candidates as tests."""
    users0 = init_users(spec, population.n_clients, seed)
    indptr, order = population.train_indptr, population.train_order
    train_items = population.train.items[order]
    test_worker = worker_of_user[loo.test_users]
    for worker in range(n_workers):
        clients = np.flatnonzero(worker_of_user == worker).astype(np.int64)
        local_indptr, positives = select_clients(indptr, train_items, clients)
        tests = np.flatnonzero(test_worker == worker)
        yield ClientShard(
            clients=clients,
            train_indptr=local_indptr,
            train=positives.astype(np.int32),
            test={
                "clients": loo.test_users[tests].astype(np.int64),
                # One worker's rows at a time: every user's candidates at once are 0.4 GB at 1M users.
                "candidates": np.concatenate([loo.test_items[tests, None], loo.negatives[tests]], axis=1).astype(
                    np.int32
                ),
            },
            private0={t: v[clients] for t, v in users0.items()},
        )
