"""Secure aggregation: pairwise and self masks that cancel in the sum, fixed point modulo 2^k,
SecAgg+ neighbourhoods, recovery of devices that drop out after masking, the layer's average
against FedAvg's, its price on the clock, distributed DP's accounting, and what it refuses. No Ray."""

from pathlib import Path

import numpy as np
import pytest
from scipy import stats

from cluster.fl.aggregation import fedavg
from cluster.fl.clock import RoundCosts
from cluster.fl.experiment import build
from cluster.fl.inprocess import round_loop
from cluster.fl.selection import RoundPlan
from cluster.fl.types import ClientUpdate
from cluster.privacy.accountant import epsilon_of_rounds
from cluster.privacy.secure_agg import (
    FixedPoint, SecureAggregationAborted, SecureRound, SecureSum, mask, neighbour_graph,
)
from cluster.privacy.secure_layer import SecureAggregationLayer
from cluster.privacy.secure_upload import MaskedUpload, masked_upload
from configs import ConfigError, load_config
from configs.privacy_schema import SecureAggregationConfig

KEY = 1234


def _round(cohort, dropped=(), degree=None, field=FixedPoint(32, 16), threshold=0.5) -> SecureRound:
    return SecureRound(3, np.asarray(cohort), degree, threshold, field, np.asarray(dropped, np.int64))


def _masked_sum(vectors: np.ndarray, secure: SecureRound, sending: np.ndarray):
    """Every device of the cohort encodes and masks its vector; those in ``sending`` upload."""
    graph = secure.neighbours()
    total = SecureSum(secure, vectors.shape[1], KEY)
    encoded = {}
    for row, client in enumerate(secure.cohort):
        encoded[int(client)], _ = secure.field.encode(vectors[row], len(secure.cohort))
        if client in sending:
            total.add(np.array([client]), mask(encoded[int(client)], int(client), secure, graph[int(client)], KEY)[None])
    return total, encoded


@pytest.mark.parametrize("degree", [None, 4])
@pytest.mark.parametrize("field", [FixedPoint(32, 16), FixedPoint(64, 30)])
def test_the_secure_sum_equals_the_plain_fixed_point_sum_exactly_with_and_without_dropouts(degree, field):
    rng = np.random.default_rng(0)
    cohort = np.sort(rng.choice(1000, 12, replace=False))
    vectors = rng.normal(0, 3, (12, 257))
    for dropped in ([], cohort[[2, 7]]):
        secure = _round(cohort, dropped, degree, field)
        sending = np.setdiff1d(cohort, dropped)
        total, encoded = _masked_sum(vectors, secure, sending)
        unmasked, survivors, _ = total.unmask()
        plain = np.zeros(257, field.dtype)
        for client in sending:
            plain += encoded[int(client)]
        assert np.array_equal(survivors, sending)
        assert np.array_equal(unmasked, field.decode(plain)), "exact, not approximately"
        np.testing.assert_allclose(unmasked, vectors[np.isin(cohort, sending)].sum(axis=0), atol=12 / field.scale)


def test_one_devices_masked_upload_is_uniform_over_the_field_whatever_it_holds():
    secure = _round(np.arange(10), degree=4)
    graph = secure.neighbours()
    encoded, _ = secure.field.encode(np.zeros(40_000), 10)  # the most regular input there is
    masked = mask(encoded, 3, secure, graph[3], KEY)
    counts = np.bincount((masked >> 28).astype(np.int64), minlength=16)  # the top 4 bits
    assert stats.chisquare(counts).pvalue > 1e-4
    assert stats.chisquare(np.bincount((masked & 15).astype(np.int64), minlength=16)).pvalue > 1e-4
    assert not np.array_equal(masked, encoded)


def test_a_round_is_aborted_when_too_few_of_a_dropped_devices_neighbours_survive():
    cohort = np.arange(10)
    secure = _round(cohort, dropped=[0], degree=2, threshold=1.0)
    neighbours = secure.neighbours()[0]
    total, _ = _masked_sum(np.ones((10, 5)), secure, np.setdiff1d(cohort, [0, neighbours[0]]))
    with pytest.raises(SecureAggregationAborted, match="dropped out after masking"):
        total.unmask()


def test_the_neighbourhoods_are_a_symmetric_harary_graph_of_the_asked_degree():
    cohort = np.arange(100, 130)
    graph = neighbour_graph(cohort, 6, seed=0, round_index=2)
    assert all(len(n) == 6 and c not in n for c, n in graph.items())
    assert all(c in graph[int(o)] for c, n in graph.items() for o in n), "a pair masks on both sides"
    other_round = neighbour_graph(cohort, 6, 0, 3)
    assert any(not np.array_equal(other_round[c], graph[c]) for c in graph), "each round draws its own permutation"
    assert all(len(n) == 29 for n in neighbour_graph(cohort, None, 0, 2).values())


def test_the_field_clips_to_what_the_cohort_can_sum_and_counts_it():
    field = FixedPoint(32, 16)
    bound = field.bound(100)
    encoded, clipped = field.encode(np.array([-2.5, 0.0, 1e-6, bound * 2, -bound * 3]), 100)
    assert clipped == 2
    np.testing.assert_allclose(field.decode(encoded), [-2.5, 0.0, 0.0, bound, -bound], atol=1 / field.scale)


def _update(clients, n_items=6) -> ClientUpdate:
    rng = np.random.default_rng(len(clients))
    owner = np.repeat(np.arange(len(clients)), 2).astype(np.int32)
    items = np.concatenate([np.sort(rng.choice(n_items, 2, replace=False)) for _ in clients])
    return ClientUpdate(
        clients=np.asarray(clients), n_samples=rng.integers(1, 20, len(clients)), loss=rng.random(len(clients)),
        dense_deltas={"w": rng.normal(0, 0.1, (len(clients), 3, 2)).astype(np.float32)},
        item_ids=items, row_owner=owner, item_deltas={"item": rng.normal(0, 0.1, (len(items), 4)).astype(np.float32)},
    )


def test_the_layers_average_is_fedavgs_over_the_survivors():
    params = {"w": np.zeros((3, 2), np.float32), "item": np.zeros((6, 4), np.float32)}
    tier_of_user = np.zeros(50, np.int64)
    layer = SecureAggregationLayer(SecureAggregationConfig(dropout={"low": 0.3}), tier_of_user, np.array([0.3]), 7.0, 0)
    clients = np.arange(0, 50, 3)
    plan = RoundPlan(0, clients, np.ones(len(clients)), np.ones(len(clients), bool))
    secure = layer.round(plan)
    assert 0 < len(secure.dropped) < len(clients)
    update = _update(clients)
    round_sum = layer.begin(secure)
    for half in (slice(0, 8), slice(8, None)):  # two workers
        part = _subset(update, half)
        round_sum.add(masked_upload(part, params, secure, layer.key, 0))
    result = round_sum.finish(params, denominator=len(clients))
    survivors = ~np.isin(clients, secure.dropped)
    assert np.array_equal(result.clients, clients[survivors])
    expected = fedavg(_subset(update, survivors), 6)
    for name in params:
        np.testing.assert_allclose(result.average[name], expected[name], atol=1e-4)
    plain_loss = np.average(update.loss[survivors], weights=update.n_samples[survivors])
    assert result.train_loss == pytest.approx(plain_loss, abs=1e-4)


def _subset(update: ClientUpdate, rows) -> ClientUpdate:
    index = np.arange(len(update.clients))[rows]
    keep_rows = np.isin(update.row_owner, index)
    remap = np.full(len(update.clients), -1)
    remap[index] = np.arange(len(index))
    return ClientUpdate(
        clients=update.clients[index], n_samples=update.n_samples[index], loss=update.loss[index],
        dense_deltas={n: v[index] for n, v in update.dense_deltas.items()},
        item_ids=update.item_ids[keep_rows], row_owner=remap[update.row_owner[keep_rows]].astype(np.int32),
        item_deltas={n: v[keep_rows] for n, v in update.item_deltas.items()},
    )


def test_the_server_takes_nothing_but_masked_uploads():
    layer = SecureAggregationLayer(SecureAggregationConfig(), np.zeros(10, np.int64), np.zeros(1), 1.0, 0)
    secure = layer.round(RoundPlan(0, np.arange(4), np.ones(4), np.ones(4, bool)))
    with pytest.raises(TypeError, match="masked uploads"):
        layer.begin(secure).add(_update(np.arange(4)))
    upload = masked_upload(_update(np.arange(4)), {"w": np.zeros((3, 2)), "item": np.zeros((6, 4))}, secure, 1, 0)
    assert isinstance(upload, MaskedUpload) and upload.masked.dtype == np.uint32


def test_the_protocol_is_priced_on_the_clock_and_compression_saves_no_bytes_under_it():
    costs = RoundCosts(np.full(3, 100.0), np.full(3, 1e5), np.array([1e3, 5e4, 1e5]), np.ones(3))
    plain = SecureAggregationLayer(SecureAggregationConfig(), np.zeros(3, np.int64), np.zeros(1), 1.0, 0)
    sparse = SecureAggregationLayer(SecureAggregationConfig(neighbours=4), np.zeros(3, np.int64), np.zeros(1), 1.0, 0)
    full, plus = plain.price(costs, 100, 40_000), sparse.price(costs, 100, 40_000)
    assert len(set(full.upload_bytes)) == 1 and full.upload_bytes[0] > 40_000 * 4, "one public shape for everyone"
    assert (plus.upload_bytes < full.upload_bytes).all(), "SecAgg+ shares keys with fewer devices"
    assert (full.work_samples - costs.work_samples == pytest.approx(100 * 40_002 / 2e5)), "self mask + 99 pair masks"
    assert (plus.work_samples < full.work_samples).all()
    assert full.fixed_s == pytest.approx(3 * 0.05)


def _cfg(tmp_path: Path, *extra: str):
    return load_config("configs/demo.yaml", [
        "data.synthetic.n_users=240", "data.synthetic.n_items=200", "data.synthetic.target_interactions=6000",
        "model.kind=gmf", "model.embedding_dim=8", "fl.clients_per_round=40", "fl.rounds=3", "fl.overselect=0",
        "fl.upload=dense", f"data.cache_dir={tmp_path / 'cache'}", *extra,
    ])


@pytest.mark.parametrize("extra", [(), ("model.kind=neumf", "model.mlp_layers=[8,4]", "fl.optimization=channel-1:2:4")],
                         ids=["gmf", "neumf-channel"])
def test_a_secure_run_trains_the_model_the_plain_dense_run_does_to_the_fields_resolution(tmp_path: Path, extra):
    """Under Channel each dense entry is averaged over the weight of the widths that hold it,
    from one secure weight slot per width."""
    plain = round_loop(build(_cfg(tmp_path, *extra)))
    secure = round_loop(build(_cfg(tmp_path, "fl.secure_aggregation=secagg", *extra)))
    for _ in range(3):
        a, b = plain.run_round(), secure.run_round()
        assert b["upload_mb"] > a["upload_mb"] and b["sim_round_s"] > a["sim_round_s"], "the protocol costs"
    for name, value in plain.server.params.items():
        np.testing.assert_allclose(secure.server.params[name], value, atol=1e-4)


@pytest.mark.parametrize("model", ["gmf", "neumf", "dlrm", "din"])
def test_every_family_runs_under_secure_aggregation_with_dropouts_and_distributed_dp(tmp_path: Path, model):
    click = ["fl.client_lr=1.0", "model.top_hidden=[16]", "model.history_len=10"]
    cfg = _cfg(tmp_path, f"model.kind={model}", "model.mlp_layers=[8,4]", "fl.rounds=2",
               "fl.secure_aggregation={kind: secagg, neighbours: 8, dropout: {low: 0.3}}",
               "fl.privacy={kind: distributed_dp, noise_multiplier: 1.0}", *(click if model in ("dlrm", "din") else []))
    loop = round_loop(build(cfg))
    history = [loop.run_round() for _ in range(2)]
    assert sum(r["secagg_dropped"] for r in history) > 0 and not any(r["secagg_aborted"] for r in history)
    noise = [r["dp_noise_multiplier"] for r in history]
    survivors = [r["aggregated"] for r in history]
    assert noise == pytest.approx([float(np.sqrt(s / 40)) for s in survivors]), "accounted at the noise really added"
    assert history[-1]["dp_epsilon"] == pytest.approx(epsilon_of_rounds(history[0]["dp_sampling_rate"], noise,
                                                                        history[0]["dp_delta"]))
    assert all(np.isfinite(v).all() for v in loop.server.params.values())


@pytest.mark.parametrize("extra, reason", [
    (("fl.strategy=cali3f",), "does not combine with fl.strategy 'cali3f'"),
    (("fl.strategy=scaffold",), "does not combine with fl.strategy 'scaffold'"),
    (("fl.fairness={kind: ceag, measure: pairwise, reference_accuracy: {low: 0.9, mid: 0.9, high: 0.9}}",),
     "does not combine with fl.fairness"),
    (("fl.upload=touched",), "set fl.upload=dense"),
    (("fl.secure_aggregation.dropout={lowest: 0.1}",), "unknown tier"),
    (("fl.secure_aggregation.neighbours=3",), "must be even"),
    (("fl.privacy={kind: central_dp, noise_multiplier: 1}",), "use fl.privacy distributed_dp"),
])
def test_what_secure_sums_cannot_give_is_refused_with_the_reason(tmp_path: Path, extra, reason):
    with pytest.raises(ConfigError, match=reason):
        _cfg(tmp_path, "fl.secure_aggregation=secagg", *extra)


def test_distributed_dp_without_secure_aggregation_is_refused(tmp_path: Path):
    with pytest.raises(ConfigError, match="needs fl.secure_aggregation"):
        _cfg(tmp_path, "fl.privacy={kind: distributed_dp, noise_multiplier: 1}")
