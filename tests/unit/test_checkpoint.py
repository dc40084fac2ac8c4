"""Checkpoints without pickle: every state the engine saves round-trips exactly, and a missing,
corrupt or foreign checkpoint is a clear error."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from cluster import checkpoint
from cluster.checkpoint import CheckpointError
from cluster.storage import Storage


def _state():
    rng = np.random.default_rng(3)
    rng.integers(0, 10, 5)  # a state that is not the initial one
    params = torch.zeros(4, requires_grad=True)
    optimizer = torch.optim.Adam([params], lr=0.1)
    params.grad = torch.ones(4)
    optimizer.step()
    return {
        "params": {"item": np.arange(6, dtype=np.float32).reshape(2, 3)},
        "rng": rng.bit_generator.state,
        "round_index": np.int64(7),
        "samplers": [None, {"order": np.array([3, 1]), "position": 1}],
        "history": [{"round": 1, "loss": float("nan"), "tier": "low"}],
        "optimizer": optimizer.state_dict(),  # int keys, tensors, tuples (betas)
    }


def test_state_round_trips_exactly(tmp_path):
    state = _state()
    checkpoint.write_state(Storage(tmp_path), "aggregator", "aggregator", state)
    back = checkpoint.read_state(Storage(tmp_path), "aggregator", "aggregator")
    np.testing.assert_array_equal(back["params"]["item"], state["params"]["item"])
    assert back["params"]["item"].dtype == np.float32
    rng = np.random.default_rng()
    rng.bit_generator.state = back["rng"]
    again = np.random.default_rng(3)
    again.integers(0, 10, 5)
    assert rng.integers(0, 1 << 30) == again.integers(0, 1 << 30)
    assert back["round_index"] == 7 and back["samplers"][0] is None
    np.testing.assert_array_equal(back["samplers"][1]["order"], [3, 1])
    assert math.isnan(back["history"][0]["loss"]) and back["history"][0]["tier"] == "low"
    optimizer = torch.optim.Adam([torch.zeros(4, requires_grad=True)], lr=0.1)
    optimizer.load_state_dict(back["optimizer"])
    assert optimizer.state_dict()["param_groups"][0]["betas"] == (0.9, 0.999)
    assert torch.equal(optimizer.state_dict()["state"][0]["exp_avg"], state["optimizer"]["state"][0]["exp_avg"])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["aggregator.npz"]


def test_latest_names_only_committed_rounds_and_old_rounds_go(tmp_path):
    store = Storage(tmp_path)
    assert checkpoint.latest(store) is None
    for round_index in (2, 4, 6):
        folder = checkpoint.round_folder(store, round_index)
        checkpoint.write_state(folder, "aggregator", "aggregator", {"round": round_index})
        checkpoint.commit(store, round_index)
    checkpoint.write_state(checkpoint.round_folder(store, 8), "aggregator", "aggregator", {"round": 8})  # not committed
    assert checkpoint.latest(store).name == "round-000006"
    assert sorted(store.list()) == ["latest.json", "round-000004", "round-000006", "round-000008"]


@pytest.mark.parametrize("damage, message", [
    (lambda d: None, "no such file"),
    (lambda d: (d / "aggregator.npz").write_bytes(b"garbage"), "not a readable .npz"),
    (lambda d: np.savez(d / "aggregator.npz", x=np.ones(2)), "not a FairFleet checkpoint"),
])
def test_missing_corrupt_or_foreign_checkpoints_are_named(tmp_path, damage, message):
    damage(tmp_path)
    with pytest.raises(CheckpointError, match=message) as caught:
        checkpoint.read_state(Storage(tmp_path), "aggregator", "aggregator")
    assert "aggregator.npz" in str(caught.value)


def test_a_checkpoint_of_another_kind_or_version_is_refused(tmp_path):
    store = Storage(tmp_path)
    checkpoint.write_state(store, "state", "dual-vector", {"mu": np.zeros(2)})
    with pytest.raises(CheckpointError, match="'dual-vector' checkpoint, not a 'aggregator'"):
        checkpoint.read_state(store, "state", "aggregator")
    store.write_json("latest.json", {"format": checkpoint.FORMAT, "version": 99, "folder": "round-000001"})
    with pytest.raises(CheckpointError, match="format version 99"):
        checkpoint.latest(store)


def test_objects_that_json_cannot_hold_are_refused(tmp_path):
    with pytest.raises(TypeError, match=r"state\.bad: cannot checkpoint a object"):
        checkpoint.write_state(Storage(tmp_path), "x", "x", {"bad": object()})
