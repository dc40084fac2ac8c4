"""Local differential privacy: every device clips and noises its own update before it leaves, keeps
its sample count and loss, and a user's ε is the Gaussian mechanism over the rounds it took part
in, as dp-accounting gives it. No Ray."""

from pathlib import Path

import dp_accounting
import numpy as np
import pytest

from cluster.fl.experiment import build
from cluster.fl.inprocess import round_loop
from cluster.fl.types import ClientUpdate
from cluster.privacy.central_dp import update_norms
from cluster.privacy.local_dp import LocalDPAccount, LocalNoise
from configs import ConfigError, load_config
from configs.privacy_schema import LocalDP


def _update(n_clients=4, width=3000) -> ClientUpdate:
    rng = np.random.default_rng(1)
    owner = np.repeat(np.arange(n_clients), 2).astype(np.int32)
    return ClientUpdate(
        clients=np.arange(10, 10 + n_clients), n_samples=np.arange(1, n_clients + 1), loss=np.ones(n_clients),
        dense_deltas={"w": rng.normal(0, 5.0, (n_clients, width)).astype(np.float32)},
        item_ids=np.tile([1, 3], n_clients), row_owner=owner,
        item_deltas={"item": rng.normal(0, 5.0, (2 * n_clients, 4)).astype(np.float32)},
        touched_rows=np.full(n_clients, 2),
    )


def test_each_device_clips_to_c_and_adds_noise_of_std_sigma_c_to_every_entry():
    update = _update()
    silent = LocalNoise(0, clip_norm=2.0, noise_std=0.0).apply(update, {}, seed=0)
    np.testing.assert_allclose(update_norms(silent), 2.0, rtol=1e-5)
    noised = LocalNoise(0, clip_norm=2.0, noise_std=0.3).apply(update, {}, seed=0)
    assert (noised.dense_deltas["w"] - silent.dense_deltas["w"]).std() == pytest.approx(0.3, rel=0.03)
    assert not np.array_equal(noised.item_deltas["item"], silent.item_deltas["item"]), "the rows are noised too"
    assert (noised.n_samples == 1).all() and np.isnan(noised.loss).all() and noised.touched_rows is None


def test_a_devices_noise_is_its_own_whichever_worker_holds_it():
    update = _update()
    whole = LocalNoise(2, 1.0, 0.5).apply(update, {}, seed=7)
    first = LocalNoise(2, 1.0, 0.5).apply(_first_two(update), {}, seed=7)
    np.testing.assert_array_equal(first.dense_deltas["w"], whole.dense_deltas["w"][:2])
    np.testing.assert_array_equal(first.item_deltas["item"], whole.item_deltas["item"][:4])


def _first_two(update: ClientUpdate) -> ClientUpdate:
    rows = update.row_owner < 2
    return ClientUpdate(
        clients=update.clients[:2], n_samples=update.n_samples[:2], loss=update.loss[:2],
        dense_deltas={"w": update.dense_deltas["w"][:2]}, item_ids=update.item_ids[rows],
        row_owner=update.row_owner[rows], item_deltas={"item": update.item_deltas["item"][rows]},
    )


def test_a_users_epsilon_is_the_gaussian_mechanism_over_its_releases():
    account = LocalDPAccount(LocalDP(noise_multiplier=4.0, delta=1e-5), n_clients=20)
    account.spend(np.array([1, 2, 3]))
    record = account.spend(np.array([2, 5]))
    expected = dp_accounting.rdp.RdpAccountant()
    expected.compose(dp_accounting.SelfComposedDpEvent(dp_accounting.GaussianDpEvent(4.0), 2))
    assert record["dp_max_releases"] == 2
    assert record["dp_epsilon"] == pytest.approx(expected.get_epsilon(1e-5), rel=1e-9)
    state = account.state_dict()
    account.spend(np.array([2]))
    account.load_state_dict(state)
    assert account.spend(np.array([7]))["dp_epsilon"] == pytest.approx(record["dp_epsilon"])


def _cfg(tmp_path: Path, *extra: str):
    return load_config("configs/demo.yaml", [
        "data.synthetic.n_users=240", "data.synthetic.n_items=200", "data.synthetic.target_interactions=6000",
        "model.embedding_dim=8", "fl.clients_per_round=40", "fl.rounds=2", "fl.overselect=0", "fl.upload=dense",
        "model.mlp_layers=[8,4]", f"data.cache_dir={tmp_path / 'cache'}", *extra,
    ])


@pytest.mark.parametrize("model", ["gmf", "neumf", "dlrm", "din"])
def test_every_family_runs_with_local_dp(tmp_path: Path, model):
    click = ["fl.client_lr=1.0", "model.top_hidden=[16]", "model.history_len=10"]
    loop = round_loop(build(_cfg(tmp_path, f"model.kind={model}", "fl.privacy={kind: local_dp, noise_multiplier: 2}",
                                 *(click if model in ("dlrm", "din") else []))))
    history = [loop.run_round() for _ in range(2)]
    assert 0 < history[0]["dp_epsilon"] <= history[1]["dp_epsilon"]
    assert np.isnan(history[0]["train_loss"]), "a device's loss stays on the phone"
    assert all(np.isfinite(v).all() for v in loop.server.params.values())


@pytest.mark.parametrize("extra, reason", [
    (("fl.upload=touched",), "needs fl.upload=dense"),
    (("fl.secure_aggregation=secagg",), "is fl.privacy distributed_dp"),
    (("fl.strategy=cali3f",), "local_dp does not combine with fl.strategy 'cali3f'"),
])
def test_what_local_dp_does_not_cover_is_refused_with_the_reason(tmp_path: Path, extra, reason):
    with pytest.raises(ConfigError, match=reason):
        _cfg(tmp_path, "fl.privacy={kind: local_dp, noise_multiplier: 2}", *extra)
