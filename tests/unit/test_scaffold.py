"""SCAFFOLD: the control-variate updates against a two-client example worked by hand, the first
round equal to FedAvg's (every variate starts at 0), the correction reaching the local step, and
the device-memory refusal naming its limit."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from cluster.fl.experiment import build
from cluster.fl.inprocess import round_loop
from cluster.fl.strategies.scaffold.maths import next_client_control, next_server_control
from cluster.fl.strategies.scaffold.server import DEVICE_STATE_BUDGET_BYTES, check_device_state
from cluster.fl.families.click.model import ClickSpec
from configs import ConfigError, load_config


def test_two_clients_worked_by_hand():
    # Round 1: every variate is 0; K = 2 local steps at η = 0.5, so (w − w_i)/(K·η) = −Δw_i.
    c = np.zeros(2, np.float32)
    c_i = np.zeros((2, 2), np.float32)
    updates = np.array([[1.0, 2.0], [-1.0, 0.0]], np.float32)
    c_i_next = next_client_control(c_i, c, updates, local_steps=2, lr=0.5)
    assert c_i_next.tolist() == [[-1.0, -2.0], [1.0, 0.0]]
    # Of N = 4 clients, these two took part: c moves by a quarter of their summed changes.
    c_next = next_server_control(c, c_i_next - c_i, n_clients=4)
    assert c_next.tolist() == [0.0, -0.5]
    # Round 2, client 0 again: its step is corrected by c − c_0 = (0, −0.5) − (−1, −2) = (1, 1.5),
    # and its new variate subtracts c again: c_0 − c − Δw/(Kη) with Δw = (0.5, 0.5).
    assert (c_next - c_i_next[0]).tolist() == [1.0, 1.5]
    again = next_client_control(c_i_next[:1], c_next, np.array([[0.5, 0.5]], np.float32), local_steps=2, lr=0.5)
    assert again.tolist() == [[-1.5, -2.0]]


def _cfg(tmp_path: Path, model: str, strategy: str, *extra: str):
    recipe = (["fl.client_lr=1.0", "fl.server_optimizer=adagrad", "fl.server_lr=0.1", "model.top_hidden=[16]",
               "model.history_len=10"] if model == "dlrm" else [])
    return load_config("configs/demo.yaml", [
        "data.synthetic.n_users=150", "data.synthetic.n_items=120", "data.synthetic.target_interactions=3000",
        "data.n_negatives=20", f"model.kind={model}", "model.embedding_dim=4", "model.mlp_layers=[8,4]",
        f"fl.strategy={strategy}", "fl.local_epochs=2", "fl.clients_per_round=24", "fl.rounds=3", "fl.overselect=0",
        f"data.cache_dir={tmp_path / 'cache'}", *recipe, *extra])


@pytest.mark.parametrize("model", ["gmf", "neumf", "dlrm"])
def test_the_first_round_is_fedavg_and_the_variates_then_steer_the_clients(tmp_path: Path, model: str):
    fedavg, scaffold = (round_loop(build(_cfg(tmp_path, model, s)), 1) for s in ("fedavg", "scaffold"))
    fedavg.run_round()
    scaffold.run_round()
    for name, value in fedavg.server.params.items():  # c = c_i = 0: no correction yet
        assert np.array_equal(scaffold.server.params[name], value), name
    control = scaffold.server.strategy.control
    assert any(np.abs(v).sum() > 0 for v in control.values()), "the round's clients moved c"
    held = [core.state for core in scaffold.pool.cores]
    assert all(set(h) == {f"control.{name}" for name in control} for h in held)
    fedavg.run_round()
    scaffold.run_round()
    assert any(not np.array_equal(scaffold.server.params[n], fedavg.server.params[n]) for n in control)


def test_a_worker_that_would_hold_too_many_variates_is_refused_naming_the_limit():
    spec = ClickSpec("dlrm", n_items=1000, n_genres=18, cats=(("gender", 2), ("age", 7)))
    per_client = 4 * sum(int(np.prod(s)) for s in spec.dense_shapes().values())
    fits = DEVICE_STATE_BUDGET_BYTES // per_client
    check_device_state(None, spec, fits)
    with pytest.raises(ValueError, match=r"over the 1 GiB a worker may give it .*4 GiB per process.*workers_per_tier"):
        check_device_state(None, spec, fits + 1)


def test_scaffold_refuses_a_narrowed_model():
    with pytest.raises(ConfigError, match="'scaffold' does not combine with fl.optimization kind 'channel'"):
        load_config(None, ["model.kind=dlrm", "fl.strategy=scaffold", "fl.optimization=channel-1:2:4"])
