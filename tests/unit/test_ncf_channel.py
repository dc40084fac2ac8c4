"""RF²'s Channel on the NCF models (HeteroFL): a slow tier's client trains the sub-model whose MLP
hidden layers but the first keep their leading channels, and each dense entry is averaged over
the clients that hold it."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from cluster.fl.experiment import build
from cluster.fl.inprocess import build_cores, trained_loop
from cluster.fl.families.ncf.negatives import RoundKey
from cluster.fl.families.ncf.training import ClientPositives, NCFOptions, train_local
from cluster.fl.families.ncf.model import NCFSpec, channel_masks, channel_slices
from cluster.tiers.optimizations import TierPlan
from configs import load_config


def test_channel_slices_by_hand():
    spec = NCFSpec("neumf", 4, (8, 4, 2), 50)
    slices = channel_slices(spec, 0.5)
    assert slices["mlp.0.weight"] == (slice(0, 8), slice(0, 8))  # the first hidden layer stays whole
    assert slices["mlp.1.weight"] == (slice(0, 8), slice(0, 2)) and slices["mlp.1.bias"] == (slice(0, 2),)
    assert slices["mlp.2.weight"] == (slice(0, 2), slice(0, 1))
    assert slices["out.weight"] == (slice(0, 4 + 1),)  # GMF's half whole, the MLP's narrowed
    assert channel_masks(NCFSpec("mlp", 4, (8, 4), 50), 0.25)["out.weight"].tolist() == [True, False, False, False]
    with pytest.raises(ValueError, match="GMF has no hidden layer"):
        channel_slices(NCFSpec("gmf", 4, (), 50), 0.5)


def _cfg(tmp_path: Path, kind: str = "neumf", workers: int = 1, *extra: str):
    return load_config("configs/demo.yaml", [
        "data.synthetic.n_users=240", "data.synthetic.n_items=200", "data.synthetic.target_interactions=6000",
        f"model.kind={kind}", "model.embedding_dim=8", "model.mlp_layers=[16,8,4]", "fl.clients_per_round=40",
        "fl.rounds=3", "fl.overselect=0", "fl.optimization=channel-1:2:4", f"fl.runtime.workers_per_tier={workers}",
        f"data.cache_dir={tmp_path / 'cache'}", *extra,
    ])


@pytest.mark.parametrize("kind", ["mlp", "neumf"])
def test_a_narrow_client_trains_exactly_the_narrow_model(tmp_path: Path, kind: str):
    exp = build(_cfg(tmp_path, kind))
    core = build_cores(exp)[0]
    clients = core.shard.clients[:5]
    rows = core._rows(clients)
    indptr = np.r_[0, np.cumsum(np.diff(core.shard.train_indptr)[rows])]
    items = np.concatenate([core.shard.train[core.shard.train_indptr[r]:core.shard.train_indptr[r + 1]] for r in rows])
    params = exp.ops.init_params(exp.cfg.seed)
    users = {t: v[rows] for t, v in core.users.items()}
    fractions = np.array([1.0, 0.25, 0.5, 0.25, 1.0], np.float32)
    mixed, _ = train_local(exp.spec, exp.recipe, params, users, ClientPositives(clients, indptr, items),
                           RoundKey(exp.cfg.seed, 3), NCFOptions(fractions=fractions))
    assert mixed.fractions.tolist() == fractions.tolist()
    narrow_slices = channel_slices(exp.spec, 0.25)
    narrow_spec = replace(exp.spec, mlp_layers=tuple(s[1].stop for n, s in narrow_slices.items()
                                                     if n.endswith("weight") and n.startswith("mlp.")))
    narrow_params = {n: (v[narrow_slices[n]] if n in narrow_slices else v) for n, v in params.items()}
    alone, _ = train_local(narrow_spec, exp.recipe, narrow_params, users, ClientPositives(clients, indptr, items),
                           RoundKey(exp.cfg.seed, 3))
    masks = channel_masks(exp.spec, 0.25)
    for name, index in narrow_slices.items():
        for c in (1, 3):
            assert np.array_equal(mixed.dense_deltas[name][c][index], alone.dense_deltas[name][c]), name
            assert not mixed.dense_deltas[name][c][~masks[name]].any(), name  # nothing outside its slice
    for table in exp.spec.item_tables:  # the item rows it uploads are the narrow model's
        owned = np.isin(mixed.row_owner, [1, 3])
        assert np.array_equal(mixed.item_deltas[table][owned], alone.item_deltas[table][np.isin(alone.row_owner, [1, 3])])


def test_each_dense_entry_is_averaged_over_the_clients_that_hold_it(tmp_path: Path):
    exp = build(_cfg(tmp_path))
    core = build_cores(exp)[0]
    clients = core.shard.clients[:4]
    settings = exp.ops.client_settings(np.array([0, 0, 2, 2]), TierPlan.resolve(exp.cfg.fl.optimization, 0.0,
                                                                                exp.fleet.tiers.names))
    assert settings.width.tolist() == [0.25, 0.25, 1.0, 1.0]
    result = core.train(0, clients, exp.ops.init_params(exp.cfg.seed), settings)
    averaged = exp.ops.average(result)
    n = result.n_samples.astype(np.float64)
    outside = ~channel_masks(exp.spec, 0.25)["mlp.1.weight"]  # held by the two full-width clients only
    full = (n[2] * result.dense_deltas["mlp.1.weight"][2] + n[3] * result.dense_deltas["mlp.1.weight"][3]) / (n[2] + n[3])
    np.testing.assert_allclose(averaged["mlp.1.weight"][outside], full[outside], rtol=1e-5, atol=1e-7)
    inside = ~outside
    every = sum(n[c] * result.dense_deltas["mlp.1.weight"][c] for c in range(4)) / n.sum()
    np.testing.assert_allclose(averaged["mlp.1.weight"][inside], every[inside], rtol=1e-5, atol=1e-7)


def test_channel_on_neumf_is_deterministic_across_workers_and_cheaper_for_the_slow_tier(tmp_path: Path):
    exp = build(_cfg(tmp_path, "neumf", 1))
    first = trained_loop(exp)
    one, history = first.server, first.history
    three = trained_loop(build(_cfg(tmp_path, "neumf", 3))).server
    for name in one.params:
        assert np.array_equal(one.params[name], three.params[name]), name
    plan = TierPlan.resolve(exp.cfg.fl.optimization, 0.0, exp.fleet.tiers.names)
    tiers = np.array([0, 1, 2])
    costs = exp.ops.round_costs(np.arange(3), tiers, np.full(3, 50), plan)
    full = exp.ops.round_costs(np.arange(3), tiers, np.full(3, 50),
                               TierPlan.resolve(load_config(None).fl.optimization, 0.0, exp.fleet.tiers.names))
    assert (costs.download_bytes[:2] < full.download_bytes[:2]).all() and costs.download_bytes[2] == full.download_bytes[2]
    assert (costs.upload_bytes[:2] < full.upload_bytes[:2]).all() and costs.upload_bytes[2] == full.upload_bytes[2]
    assert costs.compute_fraction[0] < costs.compute_fraction[1] < costs.compute_fraction[2] == 1.0
    assert all(r["aggregated"] > 0 for r in history)
