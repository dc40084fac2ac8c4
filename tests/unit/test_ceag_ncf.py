"""CEAG on the NCF models: each client reports, for every positive and each of its sampled
negatives, whether the model it received ranks the positive higher; the constraint bounds each
tier's rate of such pairs against a reference run's train measure, and re-weights NCF's FedAvg."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from cluster.fl.experiment import build
from cluster.fairness.ranking import bit_rate_by_tier, positive_negative_bits
from cluster.fl.inprocess import build_cores, round_loop
from cluster.fl.families.ncf.training import ClientPositives, train_local
from cluster.fl.families.ncf.negatives import RoundKey, hashed_negatives
from cluster.fl.families.ncf.net import score_candidates
from configs import load_config

REFERENCE = "{low: 0.99, mid: 0.5, high: 0.5}"  # the low tier far below its reference: λ_low rises


def test_positive_negative_bits_by_hand():
    bits = positive_negative_bits(np.array([2.0, 0.0]), np.array([1.0, 3.0, -1.0, 0.0]))
    assert bits.tolist() == [1.0, 0.0, 1.0, 0.0]  # a tie counts 0
    with pytest.raises(ValueError, match="not a whole number"):
        positive_negative_bits(np.array([1.0, 2.0]), np.array([0.0, 0.0, 0.0]))
    rates = bit_rate_by_tier(np.array([0, 0, 1, 2]), np.array([1.0, 0.0, 1.0, 1.0]), np.array([0, 1, 1]),
                             ("low", "high"), "pair_train")
    assert rates == {"pair_train": 0.75, "pair_train_pairs": 4, "pair_train_low": 0.5, "pair_train_high": 1.0}


def _cfg(tmp_path: Path, kind: str = "gmf", workers: int = 1, *extra: str):
    return load_config("configs/demo.yaml", [
        "data.synthetic.n_users=240", "data.synthetic.n_items=200", "data.synthetic.target_interactions=6000",
        f"model.kind={kind}", "model.embedding_dim=8", "model.mlp_layers=[16,8]", "fl.clients_per_round=40",
        "fl.rounds=3", "fl.overselect=0", f"fl.runtime.workers_per_tier={workers}",
        f"data.cache_dir={tmp_path / 'cache'}", *extra,
    ])


def _ceag(*extra: str) -> tuple[str, ...]:
    return (f"fl.fairness={{kind: ceag, measure: pairwise, reference_accuracy: {REFERENCE}, buffer_size: 50}}",
            *extra)


@pytest.mark.parametrize("kind", ["gmf", "neumf"])
def test_a_client_reports_its_pairs_at_the_model_it_received(tmp_path: Path, kind: str):
    exp = build(_cfg(tmp_path, kind, 1, *_ceag()))
    assert exp.recipe.ranking_bits
    core = build_cores(exp)[0]
    clients = core.shard.clients[:6]
    rows = core._rows(clients)
    n_pos = np.diff(core.shard.train_indptr)[rows]
    indptr = np.r_[0, np.cumsum(n_pos)]
    items = np.concatenate([core.shard.train[core.shard.train_indptr[r]:core.shard.train_indptr[r + 1]] for r in rows])
    params = exp.ops.init_params(exp.cfg.seed)
    users = {t: v[rows] for t, v in core.users.items()}
    args = (exp.spec, exp.recipe, params, users, ClientPositives(clients, indptr, items, core._positive_keys),
            RoundKey(exp.cfg.seed, 5))
    result, _ = train_local(*args)
    r = exp.recipe.negatives_per_positive
    assert result.correct_counts.tolist() == (n_pos * r).tolist()
    negatives = hashed_negatives(RoundKey(exp.cfg.seed, 5), clients, n_pos * r, core._positive_keys, exp.spec.n_items)
    candidates = np.concatenate([items[:, None], negatives.reshape(-1, r)], axis=1).astype(np.int64)
    positive_owner = np.repeat(np.arange(len(clients)), n_pos)
    with torch.no_grad():
        scores = score_candidates(exp.spec, {n: torch.from_numpy(v) for n, v in params.items()},
                                  {t: torch.from_numpy(v[positive_owner]) for t, v in users.items()},
                                  torch.from_numpy(candidates)).numpy()
    gap = (scores[:, :1] - scores[:, 1:]).ravel()
    clear = np.abs(gap) > 1e-5  # the training path and this one may round a near-tie differently
    assert np.array_equal(result.correct[clear], (gap > 0)[clear].astype(np.float32))
    assert 0.2 < result.correct.mean() < 0.8  # an untrained model orders pairs about at random
    # Reporting changes nothing the client uploads.
    plain, _ = train_local(exp.spec, exp.recipe.__class__(**{**exp.recipe.__dict__, "ranking_bits": False}),
                           *args[2:])
    assert len(plain.correct) == 0
    for name in plain.dense_deltas:
        assert np.array_equal(plain.dense_deltas[name], result.dense_deltas[name])
    for table in plain.item_deltas:
        assert np.array_equal(plain.item_deltas[table], result.item_deltas[table])


def test_ncf_fedavg_takes_per_client_weights(tmp_path: Path):
    exp = build(_cfg(tmp_path, "gmf"))
    core = build_cores(exp)[0]
    clients = core.shard.clients[:3]
    result = core.train(0, clients, exp.ops.init_params(exp.cfg.seed))
    weights = np.array([0.7, -0.2, 0.5])
    averaged = exp.ops.average(result, weights)
    expected = sum(w * result.dense_deltas["out.weight"][c] for c, w in enumerate(weights))
    np.testing.assert_allclose(averaged["out.weight"], expected, rtol=1e-5, atol=1e-7)
    rows = np.zeros((exp.spec.n_items, exp.spec.dim))
    np.add.at(rows, result.item_ids, weights[result.row_owner][:, None] * result.item_deltas["item_gmf"])
    np.testing.assert_allclose(averaged["item_gmf"], rows, rtol=1e-5, atol=1e-7)
    sample_weights = result.n_samples / result.n_samples.sum()
    for name, value in exp.ops.average(result).items():
        assert np.array_equal(value, exp.ops.average(result, sample_weights)[name]), name


def _run(cfg):
    exp = build(cfg)
    loop = round_loop(exp)
    for _ in range(cfg.fl.rounds):
        loop.run_round()
    return exp, loop


@pytest.mark.parametrize("kind,preset", [("gmf", "prune-1:4:16"), ("neumf", "quants-1:2:8")])
def test_ceag_on_ncf_is_deterministic_across_workers_and_changes_the_model(tmp_path: Path, kind: str, preset: str):
    (exp, one), (_, three) = (_run(_cfg(tmp_path, kind, w, *_ceag(f"fl.optimization={preset}"))) for w in (1, 3))
    for name in one.server.params:
        assert np.array_equal(one.server.params[name], three.server.params[name]), name
    keys = [k for k in one.history[-1] if k.startswith(("lambda_", "psi_"))]
    assert len(keys) == 6 and [[r[k] for k in keys] for r in one.history] == [[r[k] for k in keys] for r in three.history]
    assert one.history[-1]["lambda_low"] > 0
    _, plain = _run(_cfg(tmp_path, kind, 1, f"fl.optimization={preset}"))
    assert any(not np.array_equal(plain.server.params[n], one.server.params[n]) for n in plain.server.params)
    # The train measure CEAG's reference is read from, the same whatever the worker count.
    assert one.evaluate("train") == three.evaluate("train")
    measure = one.evaluate("train")
    assert 0.5 < measure["pair_train"] < 1.0 and {f"pair_train_{t}" for t in ("low", "mid", "high")} <= set(measure)
