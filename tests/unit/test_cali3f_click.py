"""Cali3F on the click models (DLRM, DIN): a delegate's second pass starts from its cluster's
dense part N, FastAgg sets every embedding table (there is no user table, so no eq. 4), the
devices re-cluster on the mean item row of their samples, each row is scored by its owner's
cluster's model, and a run is the same with one or three workers per tier and after a resume."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from cluster.fl.experiment import build
from cluster.fl.recipe import LocalRecipe
from cluster.fl.aggregation import fastagg_dense_rows, fastagg_items
from cluster.fl.families.click.batches import predict
from cluster.fl.families.click.training import ClickOptions, ClientRows, train_local_click
from cluster.arrays import mean_item_rows
from cluster.fl.inprocess import round_loop
from cluster.fl.round_loop import RoundLoop
from cluster.fl.families.click.model import ClickSpec
from cluster.fl.families.click.net import initial_params
from cluster.fl.types import ClusterView
from configs import load_config
from tests.unit.click_fixtures import toy_click_world
from tests.unit.resume_fixtures import straight_and_resumed


def test_fastagg_on_whole_tables_by_hand_and_as_the_sparse_form():
    deltas = np.zeros((2, 3, 2), np.float32)
    deltas[0, 0] = [1.0, -1.0]                      # row 0: client 0 alone → its delta
    deltas[0, 1], deltas[1, 1] = [2.0, 0.0], [0.0, 1.0]  # row 1: weights 2 and 1
    out = fastagg_dense_rows(deltas)               # row 2: nobody → unchanged
    np.testing.assert_allclose(out, [[1.0, -1.0], [4 / 3, 1 / 3], [0.0, 0.0]], rtol=1e-6)
    rng = np.random.default_rng(0)
    dense = (rng.standard_normal((4, 7, 3)) * (rng.random((4, 7, 1)) < 0.5)).astype(np.float32)
    owner, row = np.nonzero(np.abs(dense).sum(axis=2) > 0)  # client-id order, as a merge gives
    np.testing.assert_allclose(fastagg_dense_rows(dense), fastagg_items(row, dense[owner, row], 7), rtol=1e-6, atol=1e-7)


def test_mean_item_rows_by_hand():
    table = np.arange(8, dtype=np.float32).reshape(4, 2)
    item_of_row = np.array([3, 0, 1, 1])
    out = mean_item_rows(table, item_of_row, np.array([0, 2, 2, 3]), np.array([0, 1, 2]))
    np.testing.assert_array_equal(out, [[3.0, 4.0], [0.0, 0.0], [2.0, 3.0]])  # a client without rows: zero


@pytest.mark.parametrize("kind", ["dlrm", "din"])
def test_a_delegates_cluster_pass_starts_from_its_clusters_dense_part(kind: str):
    _, _, features, indptr, rows = toy_click_world(5, [9, 14, 6, 20, 11])
    spec = ClickSpec.for_features(kind, features, top_hidden=(16,), history_len=10)
    recipe, params = LocalRecipe.one_rate(0.5, epochs=2), initial_params(spec, 0)
    clients = np.arange(len(indptr) - 1)
    at_global = train_local_click(spec, recipe, params, features, ClientRows(clients, indptr, rows))
    same = {n: np.repeat(params[n][None], len(clients), axis=0) for n in spec.dense_shapes()}
    from_same = train_local_click(spec, recipe, params, features, ClientRows(clients, indptr, rows), ClickOptions(client_dense=same))
    for name in at_global.dense_deltas:
        assert np.array_equal(at_global.dense_deltas[name], from_same.dense_deltas[name]), name
    # Client 3 from its own start trains exactly as the global model set to that start would.
    other = initial_params(spec, 9)
    own = {n: same[n].copy() for n in same}
    for n in own:
        own[n][3] = other[n]
    mixed = train_local_click(spec, recipe, params, features, ClientRows(clients, indptr, rows), ClickOptions(client_dense=own))
    alone_params = params | {n: other[n] for n in own}
    alone = train_local_click(spec, recipe, alone_params, features,
                              ClientRows(clients[3:4], indptr[3:5] - indptr[3], rows[indptr[3] : indptr[4]]))
    for name in mixed.dense_deltas:
        assert np.array_equal(mixed.dense_deltas[name][3], alone.dense_deltas[name][0]), name
        assert np.array_equal(mixed.dense_deltas[name][1], at_global.dense_deltas[name][1]), name


# --------------------------------------------------------------------------- whole rounds
def _cfg(tmp_path: Path, workers: int = 1, rounds: int = 3, kind: str = "dlrm", *extra: str):
    return load_config("configs/demo.yaml", [
        "data.synthetic.n_users=240", "data.synthetic.n_items=300", "data.synthetic.target_interactions=6000",
        f"model.kind={kind}", "model.top_hidden=[32]", "model.history_len=20", "fl.strategy=cali3f",
        "fl.strategy.n_clusters=4", "fl.clients_per_round=40", f"fl.rounds={rounds}", "fl.overselect=0",
        "fl.client_lr=1.0", "fl.server_optimizer=adagrad", "fl.server_lr=0.1",
        f"fl.runtime.workers_per_tier={workers}", f"data.cache_dir={tmp_path / 'cache'}", *extra,
    ])


def _run(exp, rounds: int) -> RoundLoop:
    loop = round_loop(exp)
    for _ in range(rounds):
        loop.run_round()
    return loop


def _assert_same_run(a: RoundLoop, b: RoundLoop) -> None:
    for name in a.server.params:
        assert np.array_equal(a.server.params[name], b.server.params[name]), name
    sa, sb = a.server.strategy, b.server.strategy
    assert np.array_equal(sa.labels, sb.labels) and np.array_equal(sa.centroids, sb.centroids)
    for name in sa.models:
        assert np.array_equal(sa.models[name], sb.models[name]), name


def test_cali3f_on_dlrm_is_the_same_with_one_or_three_workers_per_tier(tmp_path: Path):
    loops, scores = [], []
    for workers in (1, 3):
        exp = build(_cfg(tmp_path, workers, 3, "dlrm", "fl.optimization=prune-1:4:16"))
        loops.append(_run(exp, 3))
        scores.append(loops[-1].evaluate("test"))
    _assert_same_run(*loops)
    assert scores[0] == scores[1]
    assert any(r["reclustered_clients"] > 0 for r in loops[0].history)  # the item-row vectors moved clients


def test_cali3f_on_din_personalises_the_dense_part_and_serves_each_row_its_clusters_model(tmp_path: Path):
    exp = build(_cfg(tmp_path, 1, 2, "din"))
    loop = _run(exp, 2)
    strategy, params = loop.server.strategy, loop.server.params
    assert set(strategy.models) == set(exp.spec.dense_shapes()) and not any(n.startswith("emb.") for n in strategy.models)
    spread = [np.abs(v - v[:1]).max() for v in strategy.models.values()]
    assert max(spread) > 0  # the clusters' dense parts went their own ways (CaliUp)
    core = loop.pool.cores[0]
    owners, labels, served = core.evaluate(params, "test", strategy.serving_view())
    _, _, global_scores = core.evaluate(params, "test", None)
    assert not np.array_equal(served, global_scores)
    # Every cluster set to the global dense part serves exactly the global model's scores.
    as_global = ClusterView(strategy.labels, {n: np.repeat(params[n][None], strategy.n_clusters, axis=0)
                                               for n in strategy.models})
    _, _, same = core.evaluate(params, "test", as_global)
    np.testing.assert_allclose(same, predict(exp.spec, params, core.features, core.shard.test["rows"]),
                               rtol=1e-5, atol=1e-6)


def test_cali3f_on_dlrm_resumes_from_a_checkpoint_exactly(tmp_path: Path):
    straight, resumed = straight_and_resumed(build(_cfg(tmp_path, 1, 4)), tmp_path / "checkpoints", 4, 2)
    _assert_same_run(straight, resumed)
