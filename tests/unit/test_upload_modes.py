"""``fl.upload``: which embedding rows a client (click or NCF model) sends (touched, dense, padded), what
the server reconstructs under each compression, and what the virtual clock charges for it."""

import numpy as np
import pytest
import torch

from cluster.fl.aggregation import fedavg
from cluster.fl.recipe import LocalRecipe
from cluster.fl.families.click.training import ClientRows, train_local_click
from cluster.fl.families.click.upload import UploadCompression, add_decoys, compress_upload, table_rows, touched_rows, upload_size
from cluster.fl.families.click.worker import ClickWorkerCore
from cluster.fl.families.click.shard import click_shard
from cluster.fl.families.ncf.negatives import RoundKey
from cluster.fl.families.ncf.training import ClientPositives, train_local
from cluster.fl.families.ncf.ops import NCFOps, sent_item_rows
from cluster.fl.families.ncf.upload import compress_ncf_upload, widen_ncf_upload
from cluster.fl.upload_rows import decoy_count, fill_decoys, sent_rows
from cluster.fl.families.click.model import ClickSpec
from cluster.fl.families.click.net import init_params
from cluster.fl.families.ncf.model import NCFSpec, init_users
from cluster.fl.families.ncf.net import initial_params
from cluster.rng import stream
from cluster.fl.types import ClientSettings
from configs import ConfigError, load_config
from configs.fl_schema import DenseUpload, PaddedUpload, TouchedUpload
from tests.unit.click_fixtures import toy_click_world

UPLOADS = {"touched": TouchedUpload(), "dense": DenseUpload(), "padded": PaddedUpload(pad_ratio=1.5)}


def _world():
    _, holdout, features, indptr, rows = toy_click_world(0, [12, 30, 7, 25, 18, 9])
    spec = ClickSpec.for_features("dlrm", features, top_hidden=(32,))
    params = {k: v.numpy() for k, v in init_params(spec, torch.Generator().manual_seed(0)).items()}
    return holdout, features, indptr, rows, spec, params


def _trained(features, indptr, rows, spec, params, clients):
    sub_indptr = np.r_[0, np.cumsum(np.diff(indptr)[clients])]
    sub_rows = np.concatenate([rows[indptr[u] : indptr[u + 1]] for u in clients])
    result = train_local_click(spec, LocalRecipe(), params, features, ClientRows(clients, sub_indptr, sub_rows))
    touched = [touched_rows(spec, features, sub_rows[sub_indptr[i] : sub_indptr[i + 1]]) for i in range(len(clients))]
    return result, touched


def test_padded_rows_hide_the_touched_ones_among_fixed_decoys():
    touched = {"emb.item": np.array([2, 5, 9]), "emb.genre": np.array([0, 1, 2, 3])}
    sizes = {"emb.item": 40, "emb.genre": 5}
    sent = sent_rows(PaddedUpload(pad_ratio=1.5), touched, sizes, seed=7, client=3)
    assert len(sent.decoys["emb.item"]) == 5 and len(sent.decoys["emb.genre"]) == 1  # ⌈1.5·3⌉; capped by 5 − 4
    for name, ids in touched.items():
        assert not np.isin(sent.decoys[name], ids).any()
        assert np.array_equal(sent.rows[name], np.union1d(ids, sent.decoys[name]))
    again = sent_rows(PaddedUpload(pad_ratio=1.5), touched, sizes, seed=7, client=3)
    assert np.array_equal(again.decoys["emb.item"], sent.decoys["emb.item"]), "decoys may not change between rounds"
    other = sent_rows(PaddedUpload(pad_ratio=1.5), touched, sizes, seed=7, client=4)
    assert not np.array_equal(other.decoys["emb.item"], sent.decoys["emb.item"])
    dense = sent_rows(DenseUpload(), touched, sizes, seed=7, client=3)
    assert np.array_equal(dense.rows["emb.item"], np.arange(40)) and not len(dense.decoys["emb.item"])
    assert decoy_count(0, 40, 1.0) == 0


def test_decoy_values_are_zero_mean_at_the_real_rows_scale():
    table = np.zeros((4000, 8), np.float32)
    real = np.arange(100)
    table[real] = stream(0, "t").normal(0.3, 2.0, (100, 8))
    decoys = np.arange(100, 4000)
    fill_decoys(table, real, decoys, stream(0, "u"))
    assert abs(table[decoys].mean()) < 0.05
    assert table[decoys].std() == pytest.approx(table[real].std(), rel=0.03)


def test_quant_turns_untouched_rows_into_noise_only_when_they_are_sent():
    """RF² Takeaways 5-6: with every row sent, Quant's stochastic rounding moves the zero rows a
    client never read; QuantS keeps them exactly zero; touched-only uploads never send them."""
    _, features, indptr, rows, spec, params = _world()
    clients = np.array([1, 3])
    result, touched = _trained(features, indptr, rows, spec, params, clients)
    levels = np.array([4.0, 4.0])
    for upload, kind, noisy in [("dense", "quant", True), ("dense", "quants", False), ("touched", "quant", False)]:
        sent = [sent_rows(UPLOADS[upload], t, table_rows(spec), 0, int(u)).rows for t, u in zip(touched, clients)]
        out = compress_upload(spec, result, sent, UploadCompression(kind, levels), seed=0, round_index=1)
        untouched = np.setdiff1d(np.arange(spec.n_items), touched[0]["emb.item"])
        moved = np.abs(out.dense_deltas["emb.item"][0][untouched]).sum() > 0
        assert moved == noisy, (upload, kind)


def test_worker_pads_then_compresses_and_leaves_the_real_rows_alone():
    holdout, features, indptr, rows, spec, params = _world()
    clients = np.array([1, 3])
    core = ClickWorkerCore(click_shard(features, holdout.train_rows, holdout.test_rows, clients), spec,
                           LocalRecipe(), seed=0)
    plain = core.train(2, clients, params, ClientSettings(width=np.ones(2, np.float32)))
    padded = core.train(2, clients, params, ClientSettings(upload=UPLOADS["padded"],
                                                           width=np.ones(2, np.float32)))
    result, touched = _trained(features, indptr, rows, spec, params, clients)
    for c, client in enumerate(clients):
        sent = sent_rows(UPLOADS["padded"], touched[c], table_rows(spec), 0, int(client))
        assert len(sent.decoys["emb.item"]), "the item table has rows to hide among"
        for name, decoys in sent.decoys.items():
            real = touched[c][name]
            assert np.array_equal(padded.dense_deltas[name][c][real], plain.dense_deltas[name][c][real])
            assert not plain.dense_deltas[name][c][decoys].any()
            assert len(decoys) == 0 or (padded.dense_deltas[name][c][decoys] != 0).any()
    expected = add_decoys(result, [sent_rows(UPLOADS["padded"], t, table_rows(spec), 0, int(u))
                                   for t, u in zip(touched, clients)], seed=0, round_index=2)
    for name in expected.dense_deltas:
        assert np.array_equal(padded.dense_deltas[name], expected.dense_deltas[name]), name


def test_the_clock_charges_each_upload_for_what_it_sends():
    _, features, indptr, rows, spec, _ = _world()
    sizes = {u: upload_size(spec, features, indptr, rows, UPLOADS[u]) for u in UPLOADS}
    all_rows = sum(table_rows(spec).values())
    assert (sizes["dense"][0] == all_rows * spec.dim).all() and not sizes["dense"][1].any(), "dense sends no row ids"
    assert (sizes["touched"][0] < sizes["padded"][0]).all() and (sizes["padded"][0] <= sizes["dense"][0]).all()
    assert np.array_equal(sizes["touched"][1] * spec.dim, sizes["touched"][0])


def test_upload_config_names_its_kind_and_where_it_applies():
    cfg = load_config(None, ["model.kind=dlrm", "fl.upload=padded", "fl.upload.pad_ratio=2"])
    assert cfg.fl.upload == PaddedUpload(pad_ratio=2.0)
    with pytest.raises(ConfigError, match=r"fl\.upload\.pad_ratio.*unknown key"):
        load_config(None, ["model.kind=dlrm", "fl.upload=dense", "fl.upload.pad_ratio=2"])
    assert load_config(None, ["model.kind=gmf", "fl.upload=dense"]).fl.upload == DenseUpload()


def _ncf_round(kind="neumf", n_items=50, seed=0, round_index=0):
    spec = NCFSpec(kind, dim=4, mlp_layers=(8, 4), n_items=n_items)
    rng = np.random.default_rng(seed)
    counts = np.array([3, 6, 2])
    pos = np.concatenate([np.sort(rng.choice(n_items, c, replace=False)) for c in counts])
    users = init_users(spec, 3, seed)
    recipe = LocalRecipe(epochs=1, lr_dense=0.5, lr_item=5.0, lr_user=1.0, negatives_per_positive=2)
    result, _ = train_local(spec, recipe, initial_params(spec, seed), users,
                            ClientPositives(np.array([2, 5, 9]), np.r_[0, np.cumsum(counts)], pos), RoundKey(seed, round_index))
    return spec, result


def test_ncf_dense_upload_averages_as_touched_and_only_quant_moves_the_zero_rows():
    spec, result = _ncf_round()
    dense = widen_ncf_upload(result, DenseUpload(), spec.n_items, seed=0, round_index=0)
    assert len(dense.item_ids) == 3 * spec.n_items and np.array_equal(dense.touched_rows, result.touched_rows)
    same, plain = fedavg(dense, spec.n_items), fedavg(result, spec.n_items)
    for name in plain:
        assert np.array_equal(same[name], plain[name]), name
    untouched = ~np.isin(dense.item_ids, result.item_ids[result.row_owner == 0]) & (dense.row_owner == 0)
    for kind, noisy in [("quant", True), ("quants", False)]:
        out = compress_ncf_upload(dense, kind, np.array([4.0, 4.0, 4.0]), seed=0, round_index=0)
        table = spec.item_tables[0]
        assert (np.abs(out.item_deltas[table][untouched]).sum() > 0) == noisy, kind


def test_ncf_padded_upload_keeps_its_decoys_while_its_negatives_move():
    spec, first = _ncf_round(round_index=0)
    _, second = _ncf_round(round_index=1)
    pad = PaddedUpload(pad_ratio=1.0)
    a = widen_ncf_upload(first, pad, spec.n_items, seed=0, round_index=0)
    b = widen_ncf_upload(second, pad, spec.n_items, seed=0, round_index=1)
    own = lambda r, c: set(r.item_ids[r.row_owner == c].tolist())  # noqa: E731
    for c in range(3):
        touched_a, touched_b = own(first, c), own(second, c)
        assert touched_a <= own(a, c) and len(own(a, c)) == min(2 * len(touched_a), spec.n_items)
        decoys_a, decoys_b = own(a, c) - touched_a, own(b, c) - touched_b
        assert len(decoys_a & decoys_b) >= len(decoys_a) - len(touched_a | touched_b), "decoys stay put"
    real = np.isin(a.item_ids, first.item_ids[first.row_owner == 1]) & (a.row_owner == 1)
    for table in spec.item_tables:
        assert np.array_equal(a.item_deltas[table][real], first.item_deltas[table][first.row_owner == 1])
        assert (a.item_deltas[table][(a.row_owner == 1) & ~real] != 0).any()


def test_ncf_clock_charges_each_upload():
    spec = NCFSpec("gmf", dim=4, mlp_layers=(8, 4), n_items=50)
    rows = {u: sent_item_rows(UPLOADS[u], np.array([10.0, 30.0]), 50) for u in UPLOADS}
    assert rows["dense"][0].tolist() == [50, 50] and not rows["dense"][1].any()
    assert rows["padded"][0].tolist() == [25, 50] and rows["touched"][0].tolist() == [10, 30]
    assert NCFOps(spec, 4, upload=DenseUpload()).client_settings(np.array([0]), _neutral_plan()).upload == DenseUpload()


def _neutral_plan():
    from cluster.tiers.optimizations import TierPlan
    from configs.schema import optimization

    return TierPlan.resolve(optimization("none"), 0.0, ("low", "mid", "high"))


def test_a_subsampled_client_trains_on_its_share_and_is_priced_for_it():
    from cluster.fl.families.click.subsample import subsample_rows

    indptr, rows = np.array([0, 8, 9, 29]), np.arange(100, 129)
    clients, shares = np.array([4, 7, 9]), np.array([0.25, 0.25, 1.0])
    sub_indptr, sub_rows = subsample_rows(indptr, rows, clients, shares, seed=0, round_index=3)
    assert np.diff(sub_indptr).tolist() == [2, 1, 20]
    for c in range(3):
        own = sub_rows[sub_indptr[c] : sub_indptr[c + 1]]
        assert np.isin(own, rows[indptr[c] : indptr[c + 1]]).all() and (np.diff(own) > 0).all()
    again = subsample_rows(indptr[:2], rows[:8], clients[:1], shares[:1], seed=0, round_index=3)
    assert np.array_equal(again[1], sub_rows[:2]), "a client's draw does not depend on who shares its worker"
    assert not np.array_equal(subsample_rows(indptr, rows, clients, shares, 0, 4)[1][:2], sub_rows[:2])
