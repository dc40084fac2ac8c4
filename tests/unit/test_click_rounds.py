"""Click-model rounds in-process (the pure server and worker cores, no Ray): the same seed and
config give bit-identical global models whether a tier's clients sit on one worker or three."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from cluster.fl.inprocess import trained_loop
from configs import load_config
from configs.presets import RF2_CONFIGURATIONS
from cluster.fl.experiment import build
from cluster.tiers.optimizations import INDEX_BYTES, TierPlan


def _rounds(tmp_path: Path, workers_per_tier: int, kind: str, preset: str, rounds: int = 2, n_users: int = 240,
            *extra: str):
    cfg = load_config("configs/demo.yaml", [
        f"data.synthetic.n_users={n_users}", "data.synthetic.n_items=300", f"data.synthetic.target_interactions={25 * n_users}",
        f"model.kind={kind}", "model.top_hidden=[32]", "model.history_len=20", f"fl.optimization={preset}",
        f"fl.clients_per_round={n_users // 6}", f"fl.rounds={rounds}", "fl.overselect=0", "fl.client_lr=1.0", "fl.server_optimizer=adagrad",
        "fl.server_lr=0.1", f"fl.runtime.workers_per_tier={workers_per_tier}", f"data.cache_dir={tmp_path / 'cache'}", *extra,
    ])
    exp = build(cfg)
    server = trained_loop(exp).server
    return server.params, exp.ops.init_params(cfg.seed)


@pytest.mark.parametrize("kind,preset", [("din", "quants-1:2:4"), ("dlrm", "prune-1:4:16"), ("din", "channel-1:2:8")])
def test_same_global_model_with_one_or_three_workers_per_tier(tmp_path: Path, kind: str, preset: str):
    one, _ = _rounds(tmp_path, 1, kind, preset)
    three, _ = _rounds(tmp_path, 3, kind, preset)
    for name in one:
        assert np.array_equal(one[name], three[name]), name


@pytest.mark.parametrize("kind", ["dlrm", "din"])
@pytest.mark.parametrize("preset", RF2_CONFIGURATIONS)
def test_every_rf2_configuration_trains_both_click_models(tmp_path: Path, kind: str, preset: str):
    params, initial = _rounds(tmp_path, 1, kind, preset, rounds=1, n_users=60)
    assert all(np.isfinite(v).all() for v in params.values())
    assert not np.array_equal(params["top.0.weight"], initial["top.0.weight"]), "the global model moved"


CEAG = "fl.fairness={kind: ceag, buffer_size: 100, dual_lr: 5.0, reference_accuracy: {low: 0.9, mid: 0.8, high: 0.8}}"


def test_ceag_is_deterministic_across_worker_counts_and_changes_the_model(tmp_path: Path):
    one, _ = _rounds(tmp_path, 1, "dlrm", "channel-1:4:16", 3, 240, CEAG)
    three, _ = _rounds(tmp_path, 3, "dlrm", "channel-1:4:16", 3, 240, CEAG)
    for name in one:
        assert np.array_equal(one[name], three[name]), name
    plain, _ = _rounds(tmp_path, 1, "dlrm", "channel-1:4:16", 3, 240)
    assert not np.array_equal(one["top.1.weight"], plain["top.1.weight"]), "CEAG's weights reached the update"


PAIRWISE = ("fl.fairness={kind: ceag, measure: pairwise, buffer_size: 100, dual_lr: 5.0, "
            "reference_accuracy: {low: 0.95, mid: 0.8, high: 0.8}}")


def test_pairwise_ceag_is_deterministic_across_worker_counts_and_differs_from_accuracy(tmp_path: Path):
    one, _ = _rounds(tmp_path, 1, "dlrm", "prune-1:4:16", 3, 240, PAIRWISE)
    three, _ = _rounds(tmp_path, 3, "dlrm", "prune-1:4:16", 3, 240, PAIRWISE)
    for name in one:
        assert np.array_equal(one[name], three[name]), name
    by_accuracy, _ = _rounds(tmp_path, 1, "dlrm", "prune-1:4:16", 3, 240, PAIRWISE.replace("pairwise", "accuracy"))
    assert not np.array_equal(one["top.1.weight"], by_accuracy["top.1.weight"]), "the measure reached the weights"


PAIRWISE_PROXY = PAIRWISE.replace("measure: pairwise,", "measure: pairwise, proxy: pairwise_logistic,")


def test_pairwise_proxy_is_deterministic_reaches_the_model_and_is_priced(tmp_path: Path):
    padded = "fl.upload={kind: padded, pad_ratio: 0.5}"  # decoys and compression on the proxy upload too
    one, _ = _rounds(tmp_path, 1, "dlrm", "prune-1:4:16", 3, 240, PAIRWISE_PROXY, padded)
    three, _ = _rounds(tmp_path, 3, "dlrm", "prune-1:4:16", 3, 240, PAIRWISE_PROXY, padded)
    for name in one:
        assert np.array_equal(one[name], three[name]), name
    by_loss, _ = _rounds(tmp_path, 1, "dlrm", "prune-1:4:16", 3, 240, PAIRWISE, padded)
    assert not np.array_equal(one["top.1.weight"], by_loss["top.1.weight"]), "the proxy's gradients reached the update"

    def upload_bytes(fairness: str):
        cfg = load_config("configs/demo.yaml", ["data.synthetic.n_users=60", "data.synthetic.n_items=300",
                                                "data.synthetic.target_interactions=1500", "model.kind=dlrm",
                                                f"data.cache_dir={tmp_path / 'cache'}", fairness])
        exp = build(cfg)
        clients, fleet = np.arange(10), exp.fleet
        plan = TierPlan.resolve(cfg.fl.optimization, 0.0, fleet.tiers.names)
        costs = exp.ops.round_costs(clients, fleet.tier_of_user[clients], fleet.train_samples[clients], plan)
        return costs.upload_bytes, exp.ops.sparse_rows[clients] * INDEX_BYTES

    (with_proxy, ids), (without, _) = upload_bytes(PAIRWISE_PROXY), upload_bytes(PAIRWISE)
    np.testing.assert_allclose(with_proxy - ids, 2 * (without - ids), rtol=1e-12)  # the same rows' values again


def test_a_client_reports_its_pairwise_bits(tmp_path: Path):
    from cluster.fl.experiment import build
    from cluster.fairness.ranking import pairwise_bits
    from cluster.fl.inprocess import build_cores

    cfg = load_config("configs/demo.yaml", [
        "data.synthetic.n_users=120", "data.synthetic.n_items=200", "data.synthetic.target_interactions=3000",
        "model.kind=dlrm", "model.top_hidden=[16]", "fl.client_lr=1.0", PAIRWISE, f"data.cache_dir={tmp_path / 'cache'}",
    ])
    exp = build(cfg)
    core = build_cores(exp)[0]
    params = exp.ops.init_params(cfg.seed)
    clients = core.shard.clients[:5]
    result = core.train(0, clients, params)
    owners, labels, scores = core.evaluate(params, "train")
    offset = 0
    for client, count in zip(result.clients, result.correct_counts):
        mine = owners == client
        expected = pairwise_bits(scores[mine], labels[mine])  # the same model, the same rows in the same order
        assert count == len(expected)
        np.testing.assert_array_equal(result.correct[offset:offset + count], expected)
        offset += count
