"""The one local-SGD loop on a model small enough to differentiate by hand: logit = w · x + b."""

import numpy as np
import pytest
import torch

from cluster.fl.proximal import proximal_step
from cluster.fl.local_sgd import ParamGroups, Proximal, Targets, local_sgd, pairwise_logistic
from cluster.fl.recipe import LocalRecipe

X = torch.tensor([[[1.0, 0.0], [0.0, 2.0], [1.0, 1.0]],
                  [[2.0, 1.0], [0.0, 0.0], [0.0, 0.0]]])  # (C=2, L=3, 2); client 1 has one real sample
LABELS = torch.tensor([[1.0, 0.0, 1.0], [0.0, 0.0, 0.0]])
MASK = torch.tensor([[1.0, 1.0, 1.0], [1.0, 0.0, 0.0]])
COUNT = torch.tensor([3.0, 1.0])


def _leaves(w0: np.ndarray, b0: float) -> tuple[torch.Tensor, torch.Tensor]:
    w = torch.tensor(np.stack([w0, w0]), dtype=torch.float32).requires_grad_()
    b = torch.full((2, 1), b0).requires_grad_()
    return w, b


def _logits(w: torch.Tensor, b: torch.Tensor):
    return lambda: torch.einsum("cld,cd->cl", X, w) + b


def _by_hand(w0: np.ndarray, b0: float, client: int, mean: bool) -> tuple[np.ndarray, float]:
    """BCE's gradient: Σ (σ(z) − y) x over the client's real samples (÷ n for 'mean')."""
    n = int(COUNT[client])
    x, y = X[client, :n].numpy(), LABELS[client, :n].numpy()
    error = 1 / (1 + np.exp(-(x @ w0 + b0))) - y
    scale = 1 / n if mean else 1.0
    return scale * error @ x, scale * error.sum()


@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_one_step_is_the_hand_gradient_at_each_groups_rate(reduction):
    w0, b0 = np.array([0.3, -0.2]), 0.1
    w, b = _leaves(w0, b0)
    recipe = LocalRecipe(epochs=1, lr_item=0.5, lr_dense=0.2, loss_reduction=reduction)
    first = local_sgd(recipe, ParamGroups(item={"w": w}, dense={"b": b}), _logits(w, b), Targets(LABELS, MASK, COUNT))
    for client in (0, 1):
        grad_w, grad_b = _by_hand(w0, b0, client, reduction == "mean")
        np.testing.assert_allclose(w[client].detach().numpy(), w0 - 0.5 * grad_w, rtol=1e-6)
        np.testing.assert_allclose(b[client].detach().numpy(), [b0 - 0.2 * grad_b], rtol=1e-6)
    # The first step reports the mean BCE at the start whatever the reduction trains.
    z = X[0].numpy() @ w0 + b0
    expected = np.mean(np.logaddexp(0, z) - LABELS[0].numpy() * z)
    np.testing.assert_allclose(first.loss[0], expected, rtol=1e-6)
    assert first.logits.shape == (2, 3) and first.proxy == {}


def test_a_tensor_outside_the_groups_is_read_but_not_trained():
    w, b = _leaves(np.array([0.3, -0.2]), 0.1)
    before = b.detach().clone()
    local_sgd(LocalRecipe(epochs=3), ParamGroups(item={"w": w}), _logits(w, b), Targets(LABELS, MASK, COUNT))
    assert torch.equal(b.detach(), before)


def test_the_proximal_term_is_dittos_personal_step():
    w0 = np.array([0.3, -0.2])
    anchor = {"w": torch.tensor([1.0, 1.0])}
    w, b = _leaves(w0, 0.1)
    local_sgd(LocalRecipe(epochs=1, lr_dense=0.2), ParamGroups(dense={"w": w}), _logits(w, b), Targets(LABELS, MASK, COUNT),
              Proximal(3.0, anchor))
    for client in (0, 1):
        grad_w, _ = _by_hand(w0, 0.1, client, mean=True)
        expected = proximal_step({"w": w0}, {"w": anchor["w"].numpy()}, {"w": grad_w}, 0.2, 3.0)["w"]
        np.testing.assert_allclose(w[client].detach().numpy(), expected, rtol=1e-6)


def test_the_proxy_is_minus_lr_times_the_pairwise_gradient_and_zero_without_pairs():
    w0, b0 = np.array([0.3, -0.2]), 0.1
    w, b = _leaves(w0, b0)
    first = local_sgd(LocalRecipe(epochs=2, lr_item=0.5, proxy_gradient=True), ParamGroups(item={"w": w}),
                      _logits(w, b), Targets(LABELS, MASK, COUNT))
    # Client 0's pairs: clicks 0 and 2 against sample 1; mean softplus(s_1 − s_click).
    x = X[0].numpy()
    grad = np.zeros(2)
    for click in (0, 2):
        diff = x[1] @ w0 - x[click] @ w0
        grad += (1 / (1 + np.exp(-diff))) * (x[1] - x[click]) / 2
    np.testing.assert_allclose(first.proxy["w"][0], -0.5 * grad, rtol=1e-5)
    np.testing.assert_array_equal(first.proxy["w"][1], [0.0, 0.0])
    assert pairwise_logistic(torch.zeros(2, 3), LABELS, MASK)[1] == 0.0
