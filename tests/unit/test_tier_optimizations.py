"""RF²'s tier-aware optimizations as configured and priced: presets, validation, upload bytes by
hand, what each does to a round's latency, compressed click uploads and the click worker."""

import re

import numpy as np
import pytest
import torch

from cluster.fl.families.click.ops import ClickOps
from cluster.fl.recipe import LocalRecipe
from cluster.fl.families.click.shard import click_shard, restrict_features, shard_features
from cluster.fl.shard import ClientShard
from cluster.fl.families.click.training import ClickOptions, ClientRows, train_local_click
from cluster.fl.families.click.upload import (
    UploadCompression,
    compress_upload,
    dense_entries,
    touched_rows,
    upload_size,
)
from cluster.fl.families.click.worker import ClickWorkerCore
from cluster.fl.server_core import FederatedServer, FleetView
from cluster.fl.families.click.model import ClickSpec, channel_masks
from cluster.fl.families.click.net import init_params
from cluster.storage import Storage
from cluster.tiers.latency import TierTable
from cluster.tiers.optimizations import TierPlan
from cluster.fl.types import ClientSettings
from configs import ConfigError, load_config
from configs.presets import OPTIMIZATION_PRESETS, RF2_CONFIGURATIONS
from configs.schema import SimConfig, optimization
from tests.unit.click_fixtures import toy_click_world

TIERS = ("low", "mid", "high")


def test_the_fourteen_rf2_configurations():
    assert len(RF2_CONFIGURATIONS) == 14 and "none" in OPTIMIZATION_PRESETS
    assert OPTIMIZATION_PRESETS["prune-1:4:16"]["levels"] == {"low": 0.9375, "mid": 0.75, "high": 0.0}
    assert OPTIMIZATION_PRESETS["quants-1:2:8"]["levels"] == {"low": 4, "mid": 8, "high": 32}
    assert OPTIMIZATION_PRESETS["channel-1:2:4"]["levels"] == {"low": 0.25, "mid": 0.5, "high": 1.0}
    for name in RF2_CONFIGURATIONS:
        cfg = load_config(None, ["model.kind=dlrm", f"fl.optimization={name}"])
        assert cfg.fl.optimization.preset == name
        # A run's written config repeats the preset's values and must load again (resume).
        assert SimConfig.model_validate(cfg.model_dump(mode="json")) == cfg


def test_optimization_config_errors_name_the_problem():
    cases = {
        "fl.optimization=prune-1:9:9": "unknown preset",
        "fl.optimization={preset: quant-1:2:4, kind: prune}": "sets ['kind'] itself",
        "fl.optimization={kind: quant, levels: {low: 3.5}}": "whole bits",
        "fl.optimization={kind: quants, levels: {low: 1}}": "sign + magnitude",
        "fl.optimization={kind: prune, levels: {tiny: 0.5}}": "tiers ['tiny']",
        "fl.optimization={kind: exclude, excluded_tiers: [low, mid, high]}": "excludes every tier",
        "fl.optimization={kind: channel, levels: {low: 0}}": "a width in (0, 1]",
    }
    for override, message in cases.items():
        with pytest.raises(ConfigError, match=re.escape(message)):
            load_config(None, ["model.kind=dlrm", override])
    with pytest.raises(ConfigError, match="GMF has no hidden layer to narrow"):
        load_config(None, ["model.kind=gmf", "fl.optimization=channel-1:2:4"])
    assert load_config(None, ["model.kind=neumf", "fl.optimization=channel-1:2:4"]).fl.optimization.kind == "channel"
    assert load_config(None, ["model.kind=gmf", "fl.optimization=quant-1:2:4"]).fl.optimization.kind == "quant"
    # Each kind carries only its own settings; the message names the path without the tag.
    with pytest.raises(ConfigError, match=r"fl\.optimization\.overselect: unknown key \(not a setting of kind 'prune'\)"):
        load_config(None, ["fl.optimization={kind: prune, levels: {low: 0.5}, overselect: 0.2}"])
    with pytest.raises(ConfigError, match=r"fl\.optimization\.excluded_tiers: Field required"):
        load_config(None, ["fl.optimization={kind: exclude}"])
    # A resolved config written before the kinds were split (a run folder to resume) still loads.
    old = ("fl.optimization={preset: null, kind: quant, levels: {low: 4}, excluded_tiers: [], overselect: 0.2, "
           "rescale_pruned: false}")
    assert load_config(None, [old]).fl.optimization.model_dump() == {"preset": None, "kind": "quant", "levels": {"low": 4}}
    with pytest.raises(ConfigError, match="set over-selection once"):
        load_config(None, ["fl.overselect=0.2", "fl.optimization=overselect"])


def test_upload_bytes_by_hand():
    entries, rows = np.array([1000.0]), np.array([10])
    tier = np.array([0])

    def plan(preset):
        return TierPlan.resolve(optimization(preset), 0.0, TIERS)

    assert plan("none").upload_bytes(tier, entries, rows, 3).tolist() == [4000 + 40]
    assert plan("prune-1:2:4").upload_bytes(tier, entries, rows, 3).tolist() == [250 * 4 + 40 + 8]
    assert plan("quant-1:2:4").upload_bytes(tier, entries, rows, 3).tolist() == [1000 + 3 * 8 + 40]
    assert plan("quants-1:2:4").upload_bytes(tier, entries, rows, 3).tolist() == [1000 + 3 * 4 + 40]
    assert plan("quant-1:4:16").upload_bytes(np.array([2]), entries, rows, 3).tolist() == [4000 + 40], "32 bits: as is"
    channel = plan("channel-1:4:16")
    assert channel.width(np.array([0, 1, 2])).tolist() == [0.0625, 0.25, 1.0]
    assert channel.compression_level(np.array([0, 2])).tolist() == [0.0, 0.0]


def _click(kind="dlrm", seed=0):
    _, holdout, features, indptr, rows = toy_click_world(seed, [12, 30, 7, 25, 18, 9])
    spec = ClickSpec.for_features(kind, features, top_hidden=(32,))
    return holdout, features, indptr, rows, spec


def _params(spec, seed=0):
    return {k: v.numpy() for k, v in init_params(spec, torch.Generator().manual_seed(seed)).items()}


def test_each_optimization_speeds_up_the_low_tier_round():
    _, features, indptr, rows, spec = _click()
    entries, sparse_rows = upload_size(spec, features, indptr, rows)
    ops = ClickOps(spec, entries, sparse_rows)
    clients = np.arange(6)
    low = np.zeros(6, np.int64)
    samples = np.diff(indptr).astype(float)
    base = ops.round_costs(clients, low, samples, TierPlan.resolve(optimization("none"), 0.0, TIERS))
    for name in ("prune-1:2:4", "quant-1:2:4", "quants-1:2:4"):
        costs = ops.round_costs(clients, low, samples, TierPlan.resolve(optimization(name), 0.0, TIERS))
        assert (costs.upload_bytes < base.upload_bytes / 3).all(), name
        assert np.array_equal(costs.download_bytes, base.download_bytes) and (costs.compute_fraction == 1).all()
    channel = TierPlan.resolve(optimization("channel-1:2:4"), 0.0, TIERS)
    narrow = ops.round_costs(clients, low, samples, channel)
    assert (narrow.download_bytes < base.download_bytes).all() and (narrow.upload_bytes < base.upload_bytes).all()
    expected = dense_entries(spec, 0.25) / dense_entries(spec, 1.0)
    assert np.allclose(narrow.compute_fraction, expected) and expected < 0.5
    high = ops.round_costs(clients, np.full(6, 2), samples, channel)
    assert np.array_equal(high.upload_bytes, base.upload_bytes), "the high tier is untouched"


def test_touched_rows_are_what_the_client_reads():
    _, features, indptr, rows, spec = _click()
    mine = rows[indptr[1] : indptr[2]]
    touched = touched_rows(spec, features, mine)
    _, history, _ = features.history(mine, spec.history_len)
    assert set(touched["emb.item"]) == set(features.item[mine]) | set(history)
    assert touched["emb.gender"].tolist() == [features.user_cats[1, 0]]
    result = train_local_click(spec, LocalRecipe(), _params(spec), features, ClientRows(np.array([1]), indptr[1:3] - indptr[1], mine))
    changed = np.flatnonzero(np.abs(result.dense_deltas["emb.item"][0]).sum(axis=1) > 0)
    assert set(changed) <= set(touched["emb.item"]), "an untouched row never changes"


@pytest.mark.parametrize("kind,level", [("prune", 0.75), ("quant", 2), ("quants", 2)])
def test_compressed_upload_per_tensor_and_per_client_stream(kind, level):
    _, features, indptr, rows, spec = _click()
    clients = np.arange(6)
    result = train_local_click(spec, LocalRecipe(), _params(spec), features, ClientRows(clients, indptr, rows))
    levels = np.full(6, float(level))
    touched_all = [touched_rows(spec, features, rows[indptr[i] : indptr[i + 1]]) for i in range(6)]
    out = compress_upload(spec, result, touched_all, UploadCompression(kind, levels), seed=3, round_index=2)
    c = 4
    touched = touched_rows(spec, features, rows[indptr[c] : indptr[c + 1]])
    sent = out.dense_deltas["emb.item"][c][touched["emb.item"]]
    original = result.dense_deltas["emb.item"][c][touched["emb.item"]]
    if kind == "prune":
        assert np.array_equal(sent[sent != 0], original[sent != 0]), "kept entries travel exactly"
        weight, before = out.dense_deltas["top.0.weight"][c], result.dense_deltas["top.0.weight"][c]
        live = before != 0  # dead ReLU units add zeros of their own
        pruned = (weight[live] == 0).sum()  # each entry pruned with probability 0.75, independently
        assert abs(pruned - 0.75 * live.sum()) <= 5 * np.sqrt(live.sum() * 0.75 * 0.25)
    elif kind == "quant":
        assert len(np.unique(sent)) <= 4
    else:
        assert len(np.unique(np.abs(sent))) <= 2  # 1 magnitude bit: 0 or max
        assert (out.dense_deltas["top.0.bias"][c][result.dense_deltas["top.0.bias"][c] == 0] == 0).all()
    untouched = np.setdiff1d(np.arange(spec.n_items), touched["emb.item"])
    assert (out.dense_deltas["emb.item"][c][untouched] == 0).all()
    # The same client compressed in another company (another worker) gets the same draws.
    alone = train_local_click(spec, LocalRecipe(), _params(spec), features,
                              ClientRows(clients[c : c + 1], indptr[c : c + 2] - indptr[c], rows[indptr[c] : indptr[c + 1]]))
    out_alone = compress_upload(spec, alone, touched_all[c : c + 1], UploadCompression(kind, levels[:1]), seed=3, round_index=2)
    for name in out.dense_deltas:
        assert np.array_equal(out.dense_deltas[name][c], out_alone.dense_deltas[name][0]), name


def test_click_shard_holds_only_its_clients_and_trains_like_the_whole(tmp_path):
    holdout, features, indptr, rows, spec = _click("din")
    mine = np.array([1, 4])
    restricted, keep = restrict_features(features, mine)
    assert set(restricted.user.tolist()) == {1, 4} and np.array_equal(features.user[keep], restricted.user)
    assert (restricted.user_cats[[0, 2, 3, 5]] == 0).all()
    shard = click_shard(features, holdout.train_rows, holdout.test_rows, mine)
    shard.save(Storage(tmp_path), "shard.npz")
    loaded = ClientShard.load(Storage(tmp_path), "shard.npz")
    assert shard_features(loaded).cat_names == features.cat_names and np.array_equal(loaded.train, shard.train)
    assert np.array_equal(loaded.test["rows"], shard.test["rows"]) and loaded.private0 == {}
    core = ClickWorkerCore(loaded, spec, LocalRecipe(), seed=0)
    params = _params(spec)
    settings = ClientSettings("quants", np.array([4.0, 32.0]), width=np.array([0.25, 1.0], np.float32))
    got = core.train(5, mine, params, settings)
    sub_indptr = np.r_[0, np.cumsum(np.diff(indptr)[mine])]
    sub_rows = np.concatenate([rows[indptr[u] : indptr[u + 1]] for u in mine])
    whole = train_local_click(spec, LocalRecipe(), params, features, ClientRows(mine, sub_indptr, sub_rows),
                              ClickOptions(settings.width))
    touched = [touched_rows(spec, features, sub_rows[sub_indptr[i] : sub_indptr[i + 1]]) for i in range(len(mine))]
    whole = compress_upload(spec, whole, touched, UploadCompression("quants", settings.levels), 0, 5)
    for name in whole.dense_deltas:
        assert np.array_equal(got.dense_deltas[name], whole.dense_deltas[name]), name
    owners, labels, scores = core.evaluate(params, "test")
    assert set(owners.tolist()) <= {1, 4} and len(owners) == np.isin(features.user[holdout.test_rows], mine).sum()
    assert ((scores > 0) & (scores < 1)).all() and set(np.unique(labels)) <= {0.0, 1.0}
    narrow = channel_masks(spec, 0.25)["top.0.weight"]
    assert (got.dense_deltas["top.0.weight"][0][~narrow] == 0).all(), "a narrow client leaves the wide channels alone"


def _fleet_of_300():
    """(ops, tiers, tier_of_user) of 300 clients, dealt over the three tiers in turn."""
    _, features, indptr, rows, spec = _click()
    entries, sparse_rows = upload_size(spec, features, indptr, rows)
    ops = ClickOps(spec, np.resize(entries, 300), np.resize(sparse_rows, 300))
    return ops, TierTable.from_config(load_config(None, []).tiers), (np.arange(300) % 3).astype(np.int8)


def test_server_excludes_tiers_and_overselects_by_preset():
    ops, tiers, tier_of_user = _fleet_of_300()
    fleet = FleetView(tiers, tier_of_user, np.full(300, 20))
    cfg = load_config(None, ["model.kind=dlrm", "fl.clients_per_round=30", "fl.optimization=exclude-lo"]).fl
    server = FederatedServer(cfg, ops, fleet, seed=0)
    for _ in range(10):
        assert (tier_of_user[server.plan_round().selected] != 0).all()
        server.round_index += 1
    cfg = load_config(None, ["model.kind=dlrm", "fl.clients_per_round=30", "fl.optimization=overselect"]).fl
    plan = FederatedServer(cfg, ops, fleet, seed=0).plan_round()
    assert len(plan.selected) == 36 and plan.kept.sum() == 30
    assert plan.upload_bytes is not None and len(plan.upload_bytes) == 36


def test_every_speed_up_shortens_the_simulated_run():
    """The virtual clock: 20 rounds of 30 clients, each preset against no optimization."""
    _, features, indptr, rows, spec = _click()
    entries, sparse_rows = upload_size(spec, features, indptr, rows)
    ops = ClickOps(ClickSpec.for_features("dlrm", features), np.resize(entries, 300), np.resize(sparse_rows, 300))
    tiers = TierTable.from_config(load_config(None, []).tiers)
    fleet = FleetView(tiers, (np.arange(300) % 3).astype(np.int8), np.resize(np.diff(indptr), 300))

    def simulated_s(preset):
        cfg = load_config(None, ["model.kind=dlrm", "fl.clients_per_round=30", f"fl.optimization={preset}"]).fl
        server = FederatedServer(cfg, ops, fleet, seed=0)
        total = 0.0
        for _ in range(20):
            total += server.plan_round().duration_s
            server.round_index += 1
        return total

    baseline = simulated_s("none")
    for preset in OPTIMIZATION_PRESETS:
        if preset != "none":
            assert simulated_s(preset) < baseline, preset


def test_ceag_population_weights_are_pairs_under_the_pairwise_measure_and_samples_otherwise():
    ops, tiers, tier_of_user = _fleet_of_300()
    samples, pairs = np.full(300, 20), np.where(tier_of_user == 0, 1, 50)  # the low tier: many samples, few pairs
    fleet = FleetView(tiers, tier_of_user, samples, reference_accuracy=np.full(3, 0.8), train_pairs=pairs)
    for measure, counts in (("pairwise", pairs), ("accuracy", samples)):
        cfg = load_config(None, ["model.kind=dlrm", "fl.fairness.kind=ceag", f"fl.fairness.measure={measure}",
                                 "fl.fairness.reference_accuracy.low=0.8", "fl.fairness.reference_accuracy.mid=0.8",
                                 "fl.fairness.reference_accuracy.high=0.8"]).fl
        server = FederatedServer(cfg, ops, fleet, seed=0)
        assert server.fairness.tier_weights.tolist() == np.bincount(tier_of_user, weights=counts).tolist(), measure


@pytest.mark.parametrize("kind,level", [("prune", 0.75), ("quant", 2), ("quants", 2)])
def test_a_compressed_ceag_proxy_is_unbiased_even_when_updates_are_pruned_without_rescaling(kind, level):
    """The aggregator adds Σ_c k_c × proxy_c as the gradient of CEAG's constraint term: a proxy
    shrunk by pruning (by 1 − rate in expectation) would shrink the term with it."""
    _, features, indptr, rows, spec = _click()
    clients = np.arange(6)
    result = train_local_click(spec, LocalRecipe.one_rate(0.5, proxy_gradient=True), _params(spec), features,
                               ClientRows(clients, indptr, rows))
    touched_all = [touched_rows(spec, features, rows[indptr[i] : indptr[i + 1]]) for i in range(6)]
    levels = np.full(6, float(level))
    draws = [compress_upload(spec, result, touched_all, UploadCompression(kind, levels, rescale_pruned=False), seed=s, round_index=0)
             for s in range(400)]
    proxy, mean = result.proxy_deltas["top.0.weight"], np.mean([d.proxy_deltas["top.0.weight"] for d in draws], axis=0)
    # 5 standard errors of a mean of draws: a kept-or-zeroed entry x/(1−r) has variance
    # x²·r/(1−r); a stochastic rounding to steps of at most max|x| a variance under max|x|²/4
    largest = np.abs(proxy).reshape(len(proxy), -1).max(axis=1)[:, None, None]
    sd = np.abs(proxy) * np.sqrt(level / (1 - level)) if kind == "prune" else largest / 2
    assert (np.abs(mean - proxy) <= 5 * sd / np.sqrt(len(draws)) + 1e-9).all()
    if kind == "prune":  # the update itself is pruned as configured, unrescaled
        update = np.mean([d.dense_deltas["top.0.weight"] for d in draws], axis=0)
        np.testing.assert_allclose(update, 0.25 * result.dense_deltas["top.0.weight"], atol=1e-3 + 0.15 * np.abs(
            result.dense_deltas["top.0.weight"]).max())
