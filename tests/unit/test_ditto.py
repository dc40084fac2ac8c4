"""Ditto's personal step and its compute cost on hand-computed cases. No Ray."""

import numpy as np
import pytest
import torch

from cluster.fl.proximal import proximal_step
from cluster.fl.strategies.ditto.server import COMPUTE_MULTIPLIER


def test_personal_step_by_hand():
    # v = (1, 2), w = (0, 4), ∇F(v) = (0.5, −1), λ = 2, η = 0.1:
    # v − w = (1, −2); ∇F + λ(v − w) = (2.5, −5); v ← (1, 2) − 0.1·(2.5, −5) = (0.75, 2.5).
    v = {"n": np.array([1.0, 2.0])}
    w = {"n": np.array([0.0, 4.0])}
    g = {"n": np.array([0.5, -1.0])}
    np.testing.assert_allclose(proximal_step(v, w, g, lr=0.1, lam=2.0)["n"], [0.75, 2.5])


def test_lambda_zero_is_local_sgd_and_regulariser_pulls_toward_global():
    v = {"n": np.array([1.0, 2.0])}
    w = {"n": np.array([0.0, 4.0])}
    zero = {"n": np.zeros(2)}
    np.testing.assert_allclose(proximal_step(v, w, {"n": np.array([1.0, 1.0])}, 0.1, 0.0)["n"], [0.9, 1.9])
    pulled = proximal_step(v, w, zero, lr=0.1, lam=1.0)["n"]
    assert np.linalg.norm(pulled - w["n"]) < np.linalg.norm(v["n"] - w["n"])
    with pytest.raises(ValueError):
        proximal_step(v, w, zero, 0.1, -1.0)


def test_personal_step_on_torch_tensors_with_a_client_axis():
    # Two clients' personal models (2, 2) against one global model (2,).
    v = {"n": torch.tensor([[1.0, 2.0], [0.0, 0.0]])}
    w = {"n": torch.tensor([0.0, 4.0])}
    g = {"n": torch.tensor([[0.5, -1.0], [0.0, 0.0]])}
    out = proximal_step(v, w, g, lr=0.1, lam=2.0)["n"]
    assert isinstance(out, torch.Tensor)
    torch.testing.assert_close(out, torch.tensor([[0.75, 2.5], [0.0, 0.8]]))


def test_a_ditto_client_computes_twice_what_a_fedavg_one_does():
    assert COMPUTE_MULTIPLIER == 2.0
