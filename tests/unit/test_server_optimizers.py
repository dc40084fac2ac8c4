"""Each server optimizer against its published update rule (Reddi et al. 2021, Algorithm 2;
Hsu et al. 2019 for FedAvgM) on a toy vector, worked out by hand in float64 and compared with
the float32 implementation; the config's forms; and what a checkpoint carries."""

from __future__ import annotations

import numpy as np
import pytest

from configs import ConfigError, load_config, load_config_text
from cluster.fl.server_optimizers import make_server_optimizer

DELTAS = [np.array([0.5, -2.0, 0.0], np.float32), np.array([-1.0, 1.0, 3.0], np.float32),
          np.array([0.25, 0.5, -0.75], np.float32)]
LR, B1, B2, TAU = 0.1, 0.9, 0.99, 1e-3


def _by_hand(kind: str) -> np.ndarray:
    theta, m, v = np.ones(3), np.zeros(3), np.zeros(3)
    for delta in (d.astype(np.float64) for d in DELTAS):
        if kind == "sgd":
            theta += LR * delta
        elif kind == "momentum":
            m = B1 * m + delta
            theta += LR * m
        elif kind == "adagrad":
            v = v + delta ** 2
            theta += LR * delta / (np.sqrt(v) + TAU)
        else:
            m = B1 * m + (1 - B1) * delta
            if kind == "adam":
                v = B2 * v + (1 - B2) * delta ** 2
            else:  # yogi
                v = v - (1 - B2) * delta ** 2 * np.sign(v - delta ** 2)
            theta += LR * m / (np.sqrt(v) + TAU)
    return theta


def _config(kind: str):
    settings = {"sgd": [], "momentum": [f"fl.server_optimizer.beta={B1}"], "adagrad": [f"fl.server_optimizer.tau={TAU}"]}
    extra = settings.get(kind, [f"fl.server_optimizer.beta1={B1}", f"fl.server_optimizer.beta2={B2}",
                                f"fl.server_optimizer.tau={TAU}"])
    return load_config(None, [f"fl.server_optimizer={kind}", *extra]).fl.server_optimizer


@pytest.mark.parametrize("kind", ["sgd", "momentum", "adagrad", "adam", "yogi"])
def test_each_server_optimizer_follows_its_published_update_rule(kind: str):
    optimizer = make_server_optimizer(_config(kind), LR)
    params = {"w": np.ones(3, np.float32)}
    for delta in DELTAS:
        optimizer.step(params, {"w": delta})
    assert params["w"].dtype == np.float32
    np.testing.assert_allclose(params["w"], _by_hand(kind), rtol=1e-5, atol=1e-6)


def test_yogi_and_adam_differ_where_the_second_moment_shrinks():
    # A large update, then small ones: Adam's v decays, Yogi's stays near the large one.
    big_then_small = [np.array([10.0], np.float32)] + [np.array([0.1], np.float32)] * 5
    moved = {}
    for kind in ("adam", "yogi"):
        optimizer = make_server_optimizer(_config(kind), LR)
        params = {"w": np.zeros(1, np.float32)}
        for delta in big_then_small:
            optimizer.step(params, {"w": delta})
        moved[kind] = optimizer.state_dict()["v"]["w"][0]
    assert moved["yogi"] > moved["adam"]


@pytest.mark.parametrize("kind", ["momentum", "adagrad", "adam", "yogi"])
def test_a_restored_optimizer_steps_as_the_unbroken_one(kind: str):
    straight = make_server_optimizer(_config(kind), LR)
    first = make_server_optimizer(_config(kind), LR)
    a, b = {"w": np.ones(3, np.float32)}, {"w": np.ones(3, np.float32)}
    for delta in DELTAS[:2]:
        straight.step(a, {"w": delta})
        first.step(b, {"w": delta})
    resumed = make_server_optimizer(_config(kind), LR)
    resumed.load_state_dict(first.state_dict())
    straight.step(a, {"w": DELTAS[2]})
    resumed.step(b, {"w": DELTAS[2]})
    assert np.array_equal(a["w"], b["w"])


def test_a_bare_name_is_the_kind_and_each_kind_takes_only_its_own_settings():
    assert load_config(None, ["fl.server_optimizer=yogi"]).fl.server_optimizer.kind == "yogi"
    with pytest.raises(ConfigError, match="tau is a setting of kind"):
        load_config(None, ["fl.server_optimizer=momentum", "fl.server_optimizer.tau=0.1"])
    with pytest.raises(ConfigError, match="beta"):
        load_config(None, ["fl.server_optimizer=adam", "fl.server_optimizer.beta1=1.0"])


def test_a_run_folder_written_with_server_eps_still_loads_and_anything_else_is_told_where_tau_went():
    old = "fl:\n  server_optimizer: adagrad\n  server_eps: 0.01\n  server_lr: 0.1\n"
    optimizer = load_config_text(old, "runs/x/config.yaml", []).fl.server_optimizer
    assert (optimizer.kind, optimizer.tau) == ("adagrad", 0.01)
    with pytest.raises(ConfigError, match="fl.server_optimizer.tau"):
        load_config(None, ["fl.server_optimizer={kind: adam}", "fl.server_eps=0.1"])
