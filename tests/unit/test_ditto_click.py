"""Ditto on the click models (``cluster/fl/families/click/personal.py``): the personal step is Ditto's
proximal step on the dense part with the global embeddings, a client's personal model does not
depend on its batch or worker, it serves (scores) the client's rows, and it survives a resume."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from cluster.fl.experiment import build
from cluster.fl.families.click.batches import client_batch, padded_shape, predict
from cluster.fl.families.click.personal import personal_predict, personal_sgd
from cluster.fl.inprocess import round_loop, run_in_process
from cluster.fl.recipe import LocalRecipe
from cluster.fl.families.click.model import ClickSpec
from cluster.fl.families.click.net import forward, initial_params
from configs import load_config
from tests.unit.click_fixtures import toy_click_world
from tests.unit.resume_fixtures import straight_and_resumed

LR, LAM = 0.5, 0.3


@pytest.fixture(scope="module")
def world():
    _, _, features, indptr, rows = toy_click_world(3, [9, 14, 6, 20, 11, 9, 3, 17])
    return features, indptr, rows


def _noisy_personal(spec: ClickSpec, params: dict, n: int, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {name: (params[name][None] + 0.05 * rng.standard_normal((n, *params[name].shape))).astype(np.float32)
            for name in spec.dense_shapes()}


@pytest.mark.parametrize("kind", ["dlrm", "din"])
def test_personal_step_is_dittos_proximal_step_on_the_dense_part(world, kind: str):
    features, indptr, rows = world
    spec = ClickSpec.for_features(kind, features, top_hidden=(16,), history_len=10)
    params = initial_params(spec, 0)
    n = len(indptr) - 1
    personal = _noisy_personal(spec, params, n)
    stepped = personal_sgd(spec, LocalRecipe.one_rate(LR, epochs=1, personal_lambda=LAM), params, personal, features, indptr, rows)
    assert set(stepped) == set(personal) and not any(name.startswith("emb.") for name in stepped)
    lengths, pairs = padded_shape(spec, features, indptr, rows)
    for client in (0, 3, 6):
        padded = client_batch(spec, features, indptr, rows, np.array([client]), int(lengths[client]), int(pairs[client]))
        batch, labels, mask, counts = padded.inputs, padded.labels, padded.mask, padded.counts
        own = {name: torch.from_numpy(personal[name][client : client + 1]).requires_grad_() for name in personal}
        full = {name: torch.from_numpy(value)[None] for name, value in params.items()} | own
        loss = (F.binary_cross_entropy_with_logits(forward(spec, full, batch), labels, reduction="none") * mask).sum() / counts[0]
        grads = dict(zip(own, torch.autograd.grad(loss, list(own.values()))))
        for name, v in own.items():
            expected = v.detach()[0].numpy() - LR * (grads[name][0].numpy() + LAM * (v.detach()[0].numpy() - params[name]))
            np.testing.assert_allclose(stepped[name][client], expected, rtol=1e-5, atol=1e-6, err_msg=name)


def test_a_clients_personal_model_and_scores_do_not_depend_on_its_batch(world):
    features, indptr, rows = world
    spec = ClickSpec.for_features("din", features, top_hidden=(16,), history_len=10)
    params = initial_params(spec, 1)
    personal = _noisy_personal(spec, params, len(indptr) - 1, seed=2)
    together = personal_sgd(spec, LocalRecipe.one_rate(LR, epochs=2, personal_lambda=LAM), params, personal, features, indptr, rows)
    scores = personal_predict(spec, params, together, features, indptr, rows)
    for client in (1, 4):
        alone_indptr = np.array([0, indptr[client + 1] - indptr[client]])
        alone_rows = rows[indptr[client] : indptr[client + 1]]
        mine = {name: value[client : client + 1] for name, value in personal.items()}
        alone = personal_sgd(spec, LocalRecipe.one_rate(LR, epochs=2, personal_lambda=LAM), params, mine, features, alone_indptr, alone_rows)
        for name in alone:
            assert np.array_equal(alone[name][0], together[name][client]), name
        alone_scores = personal_predict(spec, params, alone, features, alone_indptr, alone_rows)
        assert np.array_equal(alone_scores, scores[indptr[client] : indptr[client + 1]])


def test_a_personal_model_equal_to_the_global_one_scores_as_the_global_model(world):
    features, indptr, rows = world
    spec = ClickSpec.for_features("dlrm", features, top_hidden=(16,), history_len=10)
    params = initial_params(spec, 4)
    same = {name: np.repeat(params[name][None], len(indptr) - 1, axis=0) for name in spec.dense_shapes()}
    np.testing.assert_allclose(personal_predict(spec, params, same, features, indptr, rows),
                               predict(spec, params, features, rows), rtol=1e-5, atol=1e-6)


# --------------------------------------------------------------------------- whole rounds
def _cfg(tmp_path: Path, strategy: str, workers: int = 1, rounds: int = 3, *extra: str):
    return load_config("configs/demo.yaml", [
        "data.synthetic.n_users=240", "data.synthetic.n_items=300", "data.synthetic.target_interactions=6000",
        "model.kind=dlrm", "model.top_hidden=[32]", "model.history_len=20", f"fl.strategy={strategy}",
        "fl.clients_per_round=40", f"fl.rounds={rounds}", "fl.overselect=0", "fl.client_lr=1.0",
        "fl.server_optimizer=adagrad", "fl.server_lr=0.1", f"fl.runtime.workers_per_tier={workers}",
        f"data.cache_dir={tmp_path / 'cache'}", *extra,
    ])


def _personal_by_client(cores) -> dict[str, np.ndarray]:
    clients = np.concatenate([core.shard.clients for core in cores])
    order = np.argsort(clients)
    names = [key.removeprefix("personal.") for key in cores[0].state]
    return {name: np.concatenate([core.state[f"personal.{name}"] for core in cores])[order] for name in names}


def test_ditto_on_dlrm_keeps_fedavgs_global_model_and_serves_personal_models(tmp_path: Path):
    fedavg = run_in_process(build(_cfg(tmp_path, "fedavg")))
    exp = build(_cfg(tmp_path, "ditto", 1, 3, "fl.strategy.ditto_lambda=0.5"))
    loop = round_loop(exp)
    for _ in range(exp.cfg.fl.rounds):
        loop.run_round()
    for name in fedavg.params:  # the personal pass leaves the global model alone
        assert np.array_equal(fedavg.params[name], loop.server.params[name]), name
    assert all(d["sim_round_s"] > f["sim_round_s"] for d, f in zip(loop.history, fedavg.history))
    personal = _personal_by_client(loop.pool.cores)
    w0 = initial_params(exp.spec, exp.cfg.seed)
    moved = np.abs(personal["top.0.weight"] - w0["top.0.weight"][None]).reshape(len(personal["top.0.weight"]), -1).sum(1) > 0
    assert 0 < moved.sum() < len(moved)  # clients that trained have their own model, the others still w⁰
    served = loop.evaluate("test")
    assert served["auc"] != fedavg.test["auc"]  # each row is scored by its owner's personal model


def test_ditto_on_dlrm_is_the_same_with_one_or_three_workers_per_tier(tmp_path: Path):
    runs = []
    for workers in (1, 3):
        exp = build(_cfg(tmp_path, "ditto", workers, 2, "fl.optimization=prune-1:4:16"))
        loop = round_loop(exp)
        for _ in range(2):
            loop.run_round()
        runs.append((loop, loop.evaluate("test")))
    (one, one_eval), (three, three_eval) = runs
    for name in one.server.params:
        assert np.array_equal(one.server.params[name], three.server.params[name]), name
    one_personal, three_personal = _personal_by_client(one.pool.cores), _personal_by_client(three.pool.cores)
    for name in one_personal:
        assert np.array_equal(one_personal[name], three_personal[name]), name
    np.testing.assert_equal(one_eval, three_eval)


def test_ditto_on_dlrm_resumes_from_a_checkpoint_exactly(tmp_path: Path):
    exp = build(_cfg(tmp_path, "ditto", 1, 4))
    straight, resumed = straight_and_resumed(exp, tmp_path / "checkpoints", 4, 2)
    for name in straight.server.params:
        assert np.array_equal(straight.server.params[name], resumed.server.params[name]), name
    straight_personal, resumed_personal = _personal_by_client(straight.pool.cores), _personal_by_client(resumed.pool.cores)
    for name in straight_personal:
        assert np.array_equal(straight_personal[name], resumed_personal[name]), name
    np.testing.assert_equal(straight.evaluate("test"),
                            resumed.evaluate("test"))
