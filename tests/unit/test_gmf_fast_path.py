"""GMF's flat local training: the dense-table and the sorting paths give the same bits, the hashed
negatives stay the ones the project has always drawn, and FedAvg's item average keeps its order."""

import numpy as np
import pytest
import torch

from cluster.fl.aggregation import empty_update, fedavg, merge_updates
from cluster.fl.families.ncf import client_items
from cluster.fl.families.ncf.client_items import distinct_pairs
from cluster.fl.families.ncf.model import NCFSpec, init_users
from cluster.fl.families.ncf.negatives import RoundKey, drawn_negatives, hashed_negatives
from cluster.fl.families.ncf.net import init_global
from cluster.fl.families.ncf.training import ClientPositives, train_local
from cluster.fl.recipe import LocalRecipe
from cluster.fl.types import ClientUpdate


def test_hashed_negatives_are_the_draws_they_always_were():
    positive_keys = np.sort(np.array([2 * 12 + i for i in range(8)] + [5 * 12 + 3, 5 * 12 + 7]))
    drawn = hashed_negatives(RoundKey(7, 3), np.array([2, 5]), np.array([6, 4]), positive_keys, 12)
    assert drawn.tolist() == [9, 9, 11, 11, 8, 9, 5, 1, 4, 1]
    later = hashed_negatives(RoundKey(7, 3), np.array([5]), np.array([3]), positive_keys, 12, first_draw=np.array([1]))
    assert later.tolist() == [1, 4, 1]


def test_a_positive_table_draws_what_sorted_keys_draw():
    rng = np.random.default_rng(3)
    clients, n_items = np.array([4, 9, 17]), 30
    positives = [np.sort(rng.choice(n_items, size=n, replace=False)) for n in (25, 3, 12)]  # many retries for the first
    keys = np.sort(np.concatenate([c * n_items + p for c, p in zip(clients, positives)]))
    table = np.zeros((len(clients), n_items), bool)
    for row, p in enumerate(positives):
        table[row, p] = True
    counts = np.array([40, 7, 19])
    by_table = drawn_negatives(RoundKey(1, 5), clients, counts, lambda r, c: table[r, c], n_items)
    assert np.array_equal(by_table, hashed_negatives(RoundKey(1, 5), clients, counts, keys, n_items))
    assert not table[np.repeat(np.arange(3), counts), by_table].any()


def test_distinct_pairs_are_the_same_from_the_table_and_the_sort(monkeypatch):
    rng = np.random.default_rng(0)
    keys = rng.integers(0, 7 * 50, 400)
    dense = distinct_pairs(7, 50, keys)
    monkeypatch.setattr(client_items, "SMALL_TABLE", 0)
    monkeypatch.setattr(client_items, "CELLS_PER_KEY", 0)
    assert not client_items.dense_fits(7, 50, len(keys))
    row, item, index = distinct_pairs(7, 50, keys)
    expected = np.unique(keys)
    assert np.array_equal(row * 50 + item, expected) and np.array_equal(expected[index], keys)
    for a, b in zip(dense, (row, item, index)):
        assert np.array_equal(a, b)


def _train(spec, recipe, params, users_all, positives, clients, draw=RoundKey(0, 4)):
    clients = np.asarray(clients)
    indptr = np.r_[0, np.cumsum([len(positives[c]) for c in clients])]
    items = np.concatenate([positives[c] for c in clients])
    return train_local(spec, recipe, params, {t: v[clients] for t, v in users_all.items()},
                       ClientPositives(clients, indptr, items), draw)


def _world(n_items=60, n_clients=12, epochs=2, prox_mu=0.0):
    spec = NCFSpec("gmf", 4, (8, 4), n_items)
    recipe = LocalRecipe(epochs, 0.5, 0.7, 0.3, 4, prox_mu=prox_mu)
    params = {k: v.numpy() for k, v in init_global(spec, torch.Generator().manual_seed(2)).items()}
    rng = np.random.default_rng(5)
    positives = {c: rng.choice(n_items, size=int(n), replace=False).astype(np.int32)  # unsorted, as a shard holds them
                 for c, n in zip(range(n_clients), rng.integers(1, 20, n_clients))}
    return spec, recipe, params, init_users(spec, n_clients, seed=3), positives


def _same(a, b):
    (ra, ua), (rb, ub) = a, b
    for name in ("clients", "n_samples", "loss", "touched_rows", "item_ids", "row_owner"):
        assert np.array_equal(getattr(ra, name), getattr(rb, name)), name
    for group in ("item_deltas", "dense_deltas"):
        for name, value in getattr(ra, group).items():
            assert np.array_equal(value, getattr(rb, group)[name]), name
    assert all(np.array_equal(ua[t], ub[t]) for t in ua)


@pytest.mark.parametrize("prox_mu", [0.0, 0.5], ids=["plain", "fedprox"])
def test_gmf_gives_the_same_bits_from_the_table_and_the_sort(prox_mu, monkeypatch):
    world = _world(prox_mu=prox_mu)
    clients = [3, 0, 7, 11, 5]
    dense = _train(*world, clients)
    monkeypatch.setattr(client_items, "SMALL_TABLE", 0)
    monkeypatch.setattr(client_items, "CELLS_PER_KEY", 0)  # every batch sorts, as one over a large catalogue would
    _same(dense, _train(*world, clients))


def test_a_gmf_client_alone_on_the_table_equals_it_in_a_crowd_on_the_sort(monkeypatch):
    world = _world()
    alone = _train(*world, [7])
    monkeypatch.setattr(client_items, "CELLS_PER_KEY", 0)  # the crowd's table is too big; the one client's is not
    monkeypatch.setattr(client_items, "SMALL_TABLE", 60)
    crowd_clients = [2, 7, 0, 9, 4, 11]
    assert client_items.dense_fits(1, 60, 100) and not client_items.dense_fits(len(crowd_clients), 60, 100)
    crowd, crowd_users = _train(*world, crowd_clients)
    row = crowd_clients.index(7)
    result, users = alone
    assert np.array_equal(result.item_ids, crowd.item_ids[crowd.row_owner == row])
    assert np.array_equal(result.item_deltas["item_gmf"], crowd.item_deltas["item_gmf"][crowd.row_owner == row])
    for name, value in result.dense_deltas.items():
        assert np.array_equal(value[0], crowd.dense_deltas[name][row])
    assert np.array_equal(users["user_gmf"][0], crowd_users["user_gmf"][row]) and result.loss[0] == crowd.loss[row]


def _uploads(clients, rng, n_items):
    """One client's upload per client: a few distinct items, ascending, and their rows."""
    parts = []
    for client in clients:
        items = np.sort(rng.choice(n_items, size=int(rng.integers(1, n_items)), replace=False))
        parts.append((client, int(rng.integers(1, 50)), items, rng.standard_normal((len(items), 3)).astype(np.float32)))
    return parts


def _update(parts):
    return ClientUpdate(
        clients=np.array([p[0] for p in parts], np.int64), n_samples=np.array([p[1] for p in parts], np.int64),
        loss=np.zeros(len(parts), np.float32), dense_deltas={"out.bias": np.ones((len(parts), 1), np.float32)},
        item_ids=np.concatenate([p[2] for p in parts]).astype(np.int64),
        row_owner=np.repeat(np.arange(len(parts)), [len(p[2]) for p in parts]).astype(np.int32),
        item_deltas={"item_gmf": np.concatenate([p[3] for p in parts])},
        touched_rows=np.array([len(p[2]) for p in parts]))


def test_fedavg_of_many_uploads_is_the_same_bits_however_workers_split_them():
    rng = np.random.default_rng(1)
    n_items = 9
    parts = _uploads(rng.permutation(60), rng, n_items)
    empty = empty_update({"out.bias": (1,)}, {"item_gmf": 3})
    whole = fedavg(merge_updates([_update(parts)], empty), n_items)
    for split in ([parts[::3], parts[1::3], parts[2::3]], [parts[40:], parts[:40]]):
        by_workers = fedavg(merge_updates([_update(p) for p in split], empty), n_items)
        assert np.array_equal(whole["item_gmf"], by_workers["item_gmf"])
    weight = np.array([p[1] for p in parts]) / sum(p[1] for p in parts)
    expected = np.zeros((n_items, 3))
    for w, (_, _, items, rows) in zip(weight, parts):
        expected[items] += w * rows
    np.testing.assert_allclose(whole["item_gmf"], expected, rtol=1e-5, atol=1e-7)
