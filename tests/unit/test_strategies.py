"""Cali3F and Ditto in the engine, in-process (the pure server and worker cores, no Ray): config
rules, determinism over worker counts, Ditto's global model being FedAvg's, Cali3F's wiring of
FastAgg / CaliUp / eq. 4 / re-clustering, composition with tier-aware optimizations."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from cluster.fl.aggregation import fastagg_item_deltas
from cluster.fl.inprocess import cores_of, trained_loop
from cluster.fl.worker_pool import CorePool
from configs import ConfigError, load_config
from cluster.fl.experiment import build


def _cfg(tmp_path: Path, strategy: str, *extra: str, kind: str = "gmf", rounds: int = 4, workers: int = 1):
    return load_config("configs/demo.yaml", [
        "data.synthetic.n_users=300", "data.synthetic.n_items=200", "data.synthetic.target_interactions=9000",
        f"model.kind={kind}", "model.embedding_dim=8", "model.mlp_layers=[16,8]", f"fl.strategy.kind={strategy}",
        "fl.clients_per_round=40", f"fl.rounds={rounds}", "fl.overselect=0", f"fl.runtime.workers_per_tier={workers}",
        f"data.cache_dir={tmp_path / 'cache'}", *extra,
    ])


def _run(cfg, eval_every=None):
    exp = build(cfg)
    loop = trained_loop(exp, eval_every)
    server, cores, history = loop.server, cores_of(loop), loop.history
    return exp, server, cores, history


# --------------------------------------------------------------------------- config
def test_strategy_config_rules(tmp_path: Path):
    assert _cfg(tmp_path, "cali3f").fl.strategy.n_clusters == 5
    # Each kind carries only its own fields; the message names the path without the union's tag.
    with pytest.raises(ConfigError, match=r"fl\.strategy\.phi: unknown key \(not a setting of kind 'fedavg'\)"):
        _cfg(tmp_path, "fedavg", "fl.strategy.phi=2")
    with pytest.raises(ConfigError, match=r"fl\.strategy\.ditto_lambda: unknown key \(not a setting of kind 'cali3f'\)"):
        _cfg(tmp_path, "cali3f", "fl.strategy.ditto_lambda=1")
    with pytest.raises(ConfigError, match=r"fl\.strategy: .*'fedavg', 'fedprox', 'scaffold', 'ditto', 'cali3f'"):
        _cfg(tmp_path, "fedsgd")
    assert _cfg(tmp_path, "fedavg", "fl.strategy=ditto").fl.strategy.ditto_lambda == 0.1  # the bare name
    # an override can reach into a section first given as a bare name
    assert _cfg(tmp_path, "fedavg", "fl.strategy=cali3f", "fl.strategy.n_clusters=3").fl.strategy.n_clusters == 3
    opened = _cfg(tmp_path, "fedavg", "fl.optimization=prune-1:4:16", "fl.optimization.rescale_pruned=true")
    assert opened.fl.optimization.kind == "prune" and opened.fl.optimization.rescale_pruned
    assert _cfg(tmp_path, "cali3f", kind="dlrm").fl.strategy.kind == "cali3f"
    assert _cfg(tmp_path, "ditto", kind="dlrm").fl.strategy.kind == "ditto"
    with pytest.raises(ConfigError, match="a Ditto phone keeps and serves its own full-width model"):
        _cfg(tmp_path, "ditto", "fl.optimization=channel-1:2:4", kind="din")
    with pytest.raises(ConfigError, match="a delegate trains its cluster's full dense part"):
        _cfg(tmp_path, "cali3f", "fl.optimization=channel-1:2:4", kind="neumf")
    assert _cfg(tmp_path, "cali3f", "fl.optimization=quants-1:2:8").fl.optimization.kind == "quants"


def test_cali3f_metadata_columns_must_exist(tmp_path: Path):
    with pytest.raises(ConfigError, match=r"names \['zip'\], which the dataset"):
        build(_cfg(tmp_path, "cali3f", "fl.strategy.metadata=[age,zip]"))


# --------------------------------------------------------------------------- Ditto
def test_ditto_global_model_is_fedavgs_and_costs_twice_the_compute(tmp_path: Path):
    _, fedavg, _, fed_history = _run(_cfg(tmp_path, "fedavg"))
    exp, ditto, cores, ditto_history = _run(_cfg(tmp_path, "ditto", "fl.strategy.ditto_lambda=0.5"))
    for name in fedavg.params:  # the personal pass leaves the global one (and the user vectors) alone
        assert np.array_equal(fedavg.params[name], ditto.params[name]), name
    # Twice the local work: every round takes longer on the virtual clock.
    assert all(d["sim_round_s"] > f["sim_round_s"] for d, f in zip(ditto_history, fed_history))
    personal = cores[0].state["personal.out.weight"]
    moved = np.abs(personal - exp.ops.init_params(exp.cfg.seed)["out.weight"]).sum(axis=1) > 0
    assert 0 < moved.sum() < len(moved)  # clients that trained have their own model, the others still w⁰
    assert not np.allclose(personal[moved], ditto.params["out.weight"])


def test_ditto_personal_step_is_the_proximal_sgd_step(tmp_path: Path):
    """One local epoch: v ← v − η(∇F(v) + λ(v − w)) = (plain step from v) − ηλ(v − w)."""
    from cluster.fl.inprocess import build_cores
    from cluster.fl.families.ncf.negatives import RoundKey
    from cluster.fl.families.ncf.training import ClientPositives, NCFOptions, train_local

    exp = build(_cfg(tmp_path, "ditto", kind="neumf"))
    core = build_cores(exp)[0]
    clients = core.shard.clients[:5]
    rows = core._rows(clients)
    params = exp.ops.init_params(exp.cfg.seed)
    rng = np.random.default_rng(0)
    personal = {n: (v[None] + 0.1 * rng.standard_normal((5, *v.shape))).astype(np.float32)
                for n, v in params.items() if n in exp.spec.dense_shapes()}
    indptr = np.r_[0, np.cumsum(np.diff(core.shard.train_indptr)[rows])]
    items = np.concatenate([core.shard.train[core.shard.train_indptr[r]:core.shard.train_indptr[r + 1]] for r in rows])
    users = {t: v[rows] for t, v in core.users.items()}
    args = (exp.spec, exp.recipe, params, users, ClientPositives(clients, indptr, items), RoundKey(0, 0))
    plain, _ = train_local(*args, NCFOptions(client_dense=personal))
    prox, _ = train_local(*args, NCFOptions(client_dense=personal, prox_lambda=0.5))
    for name, v in personal.items():
        expected = plain.dense_deltas[name] - exp.recipe.lr_dense * 0.5 * (v - params[name][None])
        np.testing.assert_allclose(prox.dense_deltas[name], expected, rtol=1e-4, atol=1e-6)


# --------------------------------------------------------------------------- Cali3F
@pytest.mark.parametrize("kind,extra", [("gmf", ()), ("neumf", ("fl.optimization=quants-1:2:8", "fl.overselect=0.3"))])
def test_cali3f_is_the_same_with_one_or_three_workers_per_tier(tmp_path: Path, kind: str, extra: tuple):
    runs = [_run(_cfg(tmp_path, "cali3f", *extra, kind=kind, workers=w)) for w in (1, 3)]
    (_, one, _, one_history), (_, three, _, three_history) = runs
    for name in one.params:
        assert np.array_equal(one.params[name], three.params[name]), name
    for name in one.strategy.models:
        assert np.array_equal(one.strategy.models[name], three.strategy.models[name]), name
    assert np.array_equal(one.strategy.labels, three.strategy.labels)
    assert [r["reclustered_clients"] for r in one_history] == [r["reclustered_clients"] for r in three_history]


def test_cali3f_round_wiring(tmp_path: Path):
    """One round by hand: items move by FastAgg exactly, the global dense part by FedAvg of the
    delegates' passes at w, every cluster model by CaliUp, subordinates by eq. 4, delegates not."""
    from cluster.fl.strategies.cali3f.maths import (
        cali_update,
        cluster_gradients,
        cluster_mean_update,
        pseudo_gradient,
    )
    from cluster.fl.inprocess import build_cores
    from cluster.fl.server_core import FederatedServer

    exp = build(_cfg(tmp_path, "cali3f", "fl.strategy.recluster_every=0", "fl.strategy.discount=0.25"))
    cores = build_cores(exp)
    server = FederatedServer(exp.cfg.fl, exp.ops, exp.fleet, exp.cfg.seed)
    before = {n: v.copy() for n, v in server.params.items()}
    models_before = {n: v.copy() for n, v in server.strategy.models.items()}
    users_before = [{t: v.copy() for t, v in c.users.items()} for c in cores]
    plan = server.plan_round()
    kept = plan.kept_clients
    results = [core.train(0, np.sort(kept[exp.worker_of_user[kept] == w]), server.params,
                          server.client_settings(np.sort(kept[exp.worker_of_user[kept] == w])))
               for w, core in enumerate(cores) if (exp.worker_of_user[kept] == w).any()]
    merged = exp.ops.merge(results)
    assert set(merged.clients) == set(kept)
    server.apply(plan, merged)
    server.after_round(CorePool(cores))

    np.testing.assert_allclose(server.params["item_gmf"] - before["item_gmf"], fastagg_item_deltas(merged, exp.spec.item_tables, exp.spec.n_items)["item_gmf"],
                               atol=3e-8)
    dense = exp.ops.average(merged)
    for name in exp.spec.dense_shapes():
        np.testing.assert_allclose(server.params[name], before[name] + dense[name], rtol=1e-6)
    labels = server.strategy.labels
    grads = cluster_gradients(pseudo_gradient(merged.cluster_dense_deltas, exp.recipe.lr_dense), merged.n_samples,
                              labels[merged.clients], 5)
    expected = cali_update(models_before, {n: before[n] for n in models_before}, grads, exp.cfg.fl.client_lr, 1.0)
    for name in expected:
        np.testing.assert_array_equal(server.strategy.models[name], expected[name])
    means = cluster_mean_update(merged.user_deltas["user_gmf"], labels[merged.clients], 5)
    for core, old in zip(cores, users_before):
        is_delegate = np.isin(core.shard.clients, merged.clients)
        shift = core.users["user_gmf"][~is_delegate] - old["user_gmf"][~is_delegate]
        np.testing.assert_allclose(shift, 0.25 * means[labels[core.shard.clients[~is_delegate]]], atol=1e-6)
        np.testing.assert_allclose(core.users["user_gmf"][is_delegate],
                                   old["user_gmf"][is_delegate] + merged.user_deltas["user_gmf"][
                                       np.searchsorted(merged.clients, core.shard.clients[is_delegate])], atol=1e-6)


def test_cali3f_delegates_are_m_over_p_per_cluster_and_reclustering_moves_clients(tmp_path: Path):
    exp, server, _, history = _run(_cfg(tmp_path, "cali3f", rounds=6))
    assert all(r["selected"] == 40 for r in history)
    assert sum(r["reclustered_clients"] for r in history) > 0
    assert all(r["cluster_size_min"] >= 0 and r["cluster_size_max"] <= 300 for r in history)


@pytest.mark.parametrize("preset", ["exclude-lo", "overselect", "prune-1:4:16", "quant-1:2:8", "quants-1:2:4"])
def test_cali3f_composes_with_tier_aware_optimizations(tmp_path: Path, preset: str):
    _, plain, _, plain_history = _run(_cfg(tmp_path, "cali3f", rounds=3))
    exp, server, cores, history = _run(_cfg(tmp_path, "cali3f", f"fl.optimization={preset}", rounds=3), eval_every=3)
    assert np.isfinite(history[-1]["ndcg10"])
    if preset == "exclude-lo":
        assert all(r["selected_low"] == 0 for r in history)
    elif preset == "overselect":
        assert all(r["selected"] == 48 and r["dropped"] == 8 for r in history)
    else:
        # A compressed upload is cheaper. Only the first round has the same delegates either way
        # (later ones come from clusters re-formed on different user vectors), so compare that one.
        assert history[0]["sim_round_s"] < plain_history[0]["sim_round_s"]
        assert history[0]["upload_mb"] < plain_history[0]["upload_mb"]
        assert any(not np.array_equal(server.params[n], plain.params[n]) for n in server.params)


def test_cali3f_evaluates_each_client_with_its_clusters_dense_part(tmp_path: Path):
    exp = build(_cfg(tmp_path, "cali3f", rounds=3))
    loop = trained_loop(exp)
    server, cores = loop.server, cores_of(loop)
    summary = loop.evaluate("test")
    clients, hit, ndcg = loop.last_client_metrics()
    global_only = [c.evaluate(server.params) for c in cores]  # no cluster view: the global dense part
    assert summary["ndcg10"] == pytest.approx(ndcg.mean())
    assert not np.array_equal(np.sort(ndcg), np.sort(np.concatenate([g[2] for g in global_only])))


def test_cali3f_state_round_trips(tmp_path: Path):
    from cluster.fl.server_core import FederatedServer

    exp, server, _, _ = _run(_cfg(tmp_path, "cali3f", rounds=3))
    fresh = FederatedServer(exp.cfg.fl, exp.ops, exp.fleet, exp.cfg.seed)
    fresh.load_state_dict(server.state_dict())
    assert np.array_equal(fresh.strategy.labels, server.strategy.labels)
    assert np.array_equal(fresh.plan_round().selected, server.plan_round().selected)
    state = server.state_dict()
    state["strategy"] = None  # as a FedAvg run's checkpoint has it
    with pytest.raises(ValueError, match="no Cali3F state"):
        fresh.load_state_dict(state)


def test_ncf_upload_compression_per_client_and_neutral_levels_exact(tmp_path: Path):
    from cluster.fl.inprocess import build_cores
    from cluster.fl.families.ncf.upload import compress_ncf_upload

    exp = build(_cfg(tmp_path, "fedavg", kind="neumf"))
    core = build_cores(exp)[0]
    clients = core.shard.clients[:6]
    result = core.train(0, clients, exp.ops.init_params(exp.cfg.seed))
    levels = np.array([32, 2, 32, 4, 32, 2], dtype=float)  # 32 bits: sent as float32
    packed = compress_ncf_upload(result, "quants", levels, seed=0, round_index=0)
    for c in range(len(clients)):
        rows = result.row_owner == c
        same = np.array_equal(packed.dense_deltas["mlp.0.weight"][c], result.dense_deltas["mlp.0.weight"][c])
        assert same == (levels[c] == 32)
        assert np.array_equal(packed.item_deltas["item_mlp"][rows], result.item_deltas["item_mlp"][rows]) == (levels[c] == 32)
        # QuantS at 2 bits: sign and one magnitude level, so each tensor holds at most {-m, 0, m}.
        if levels[c] == 2:
            assert len(np.unique(np.abs(packed.dense_deltas["mlp.0.weight"][c]))) <= 2
    # A client's draws are its own: changing the others' levels leaves its upload as it was.
    others = compress_ncf_upload(result, "quants", np.array([2, 2, 8, 8, 2, 8], dtype=float), seed=0, round_index=0)
    for name in result.dense_deltas:
        assert np.array_equal(others.dense_deltas[name][1], packed.dense_deltas[name][1]), name
