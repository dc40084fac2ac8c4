"""The local-SGD recipe of ``cluster/fl/local_sgd.py`` for one client at a time, on numpy arrays,
for a model that writes its gradients by hand (the click models: ``families/click/kernel.py``).

The steps are the batched loop's — full-batch SGD on the client's BCE, a rate per tensor,
FedProx's and Ditto's proximal terms, SCAFFOLD's correction, CEAG's pairwise proxy and the
first step's report — for a client alone, so nothing it computes can depend on another client.
Tested against that loop (``tests/unit/test_click_kernel.py``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Optional, Union

import numpy as np

from cluster.fl.recipe import LocalRecipe


def sigmoid(x: np.ndarray) -> np.ndarray:
    """σ(x) without overflow: one tanh, which numpy evaluates in SIMD on float32."""
    out = np.tanh(x * np.float32(0.5))
    out += np.float32(1.0)
    out *= np.float32(0.5)
    return out


@dataclass(frozen=True)
class RowGradient:
    """The gradient of an (n_rows, d) table that is zero but on ``rows`` (distinct), there
    ``values`` (len(rows), d): a client reads a few hundred rows of a table of thousands, and a
    step that only subtracts its gradient writes just those."""

    rows: np.ndarray
    values: np.ndarray
    n_rows: int

    def dense(self) -> np.ndarray:
        out = np.zeros((self.n_rows, self.values.shape[1]), self.values.dtype)
        out[self.rows] = self.values
        return out


Gradient = Union[np.ndarray, RowGradient]


@dataclass(frozen=True)
class HandModel:
    """A client's model as two functions of its parameters: ``forward(params)`` → (logits (n,),
    cache) and ``backward(params, cache, dlogits, into=None)`` → the gradient of Σ dlogits·logits
    for every trained tensor, written into ``into[name]`` (a zeroed array) where given."""

    forward: Callable[[dict[str, np.ndarray]], tuple[np.ndarray, Any]]
    backward: Callable[..., dict[str, Gradient]]


@dataclass(frozen=True)
class ClientSteps:
    """What the client's first step saw, at the model it received — its mean BCE, its logits (n,)
    and, with ``recipe.proxy_gradient``, −lr × its pairwise-logistic gradient per trained tensor
    — and ``delta``, each trained tensor's change over all the steps."""

    loss: float
    logits: np.ndarray
    proxy: dict[str, np.ndarray]
    delta: dict[str, np.ndarray]


@dataclass(frozen=True)
class Anchor:
    """A proximal term λ(v − anchor) added to the gradient of every tensor named in ``anchor``."""

    strength: float
    anchor: dict[str, np.ndarray]


@dataclass(frozen=True)
class Outputs:
    """Where ``client_sgd`` writes each trained tensor's change and proxy gradient (zeroed arrays
    of the tensor's shape, views into the round's outputs): the round's arrays are filled without
    another copy, and a table's untouched rows are never written."""

    delta: dict[str, np.ndarray]
    proxy: dict[str, np.ndarray]


def client_sgd(
    recipe: LocalRecipe,
    params: dict[str, np.ndarray],
    rates: dict[str, float],
    model: HandModel,
    labels: np.ndarray,
    proximal: Optional[Anchor] = None,
    correction: Optional[dict[str, np.ndarray]] = None,
    out: Optional[Outputs] = None,
) -> ClientSteps:
    """``recipe.epochs`` steps from ``params`` (never written: they may be shared) on the tensors
    named in ``rates`` (name → learning rate), each step v ← v − lr·(∇ + λ(v − anchor)): Ditto's
    and FedProx's proximal step (``cluster/fl/proximal.py``) for the tensors in ``proximal``, plain
    SGD for the others. FedProx (``recipe.prox_mu``, without ``proximal``) anchors every trained
    tensor at its start. ``correction[name]``: added to that tensor's gradient at every step."""
    if recipe.prox_mu and proximal is None:
        proximal = Anchor(recipe.prox_mu, {name: params[name] for name in rates})
    out = out or Outputs({name: np.zeros_like(params[name]) for name in rates}, {})
    # One plain step (no correction, no proximal term): its change is −lr × the gradient, which
    # the backward pass writes straight into the outputs.
    plain = recipe.epochs == 1 and not correction and proximal is None
    current = dict(params)
    first: Optional[tuple[float, np.ndarray, dict[str, np.ndarray]]] = None
    for epoch in range(recipe.epochs):
        logits, cache = model.forward(current)
        if first is None:
            proxy = {}
            if recipe.proxy_gradient:
                proxy = _steps(model, current, cache, pairwise_logistic_grad(logits, labels), rates, out.proxy)
            first = (float(bce(logits, labels).sum() / len(labels)), logits, proxy)
        dlogits = sigmoid(logits) - labels
        if recipe.loss_reduction == "mean":
            dlogits /= np.float32(len(labels))
        if plain:
            _steps(model, current, cache, dlogits, rates, out.delta)
            break
        grads = model.backward(current, cache, dlogits)
        last = epoch == recipe.epochs - 1
        for name, lr in rates.items():
            grad = grads[name]
            grad = grad.dense() if isinstance(grad, RowGradient) else grad
            if correction is not None and name in correction:
                grad = grad + correction[name]
            if proximal is not None and name in proximal.anchor:
                grad = grad + proximal.strength * (current[name] - proximal.anchor[name])
            if not last:
                current[name] = current[name] - lr * grad
            else:
                np.subtract(current[name], params[name], out=out.delta[name])
                out.delta[name] -= lr * grad
    assert first is not None, "a recipe has at least one epoch"
    return ClientSteps(*first, out.delta)


def _steps(
    model: HandModel, params: dict, cache: Any, dlogits: np.ndarray, rates: dict[str, float], into: dict
) -> dict[str, np.ndarray]:
    """−lr × each trained tensor's gradient, written into ``into`` where it holds the tensor: the
    backward pass runs once on dlogits scaled by the largest rate, and a tensor at another rate
    is rescaled (a factor of 1 at RF²'s one rate)."""
    scale = max(rates.values(), key=abs, default=0.0)
    grads = model.backward(params, cache, dlogits * np.float32(-scale), into)
    out = {}
    for name, lr in rates.items():
        grad = grads[name]
        grad = grad.dense() if isinstance(grad, RowGradient) else grad
        if lr != scale:
            grad *= np.float32(lr / scale)
        out[name] = grad
    return out


def bce(logits: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Each sample's binary cross-entropy of its logit, as torch's ``…_with_logits`` computes it."""
    return np.maximum(logits, 0) - logits * labels + np.log1p(np.exp(-np.abs(logits)))


def pairwise_logistic_grad(logits: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """(n,) the gradient of the client's mean log(1 + exp(−(s_click − s_nonclick))) over its own
    (click, non-click) pairs (``local_sgd.pairwise_logistic``) with respect to its logits; 0
    without pairs."""
    clicked = labels >= 0.5
    s_click, s_other = logits[clicked], logits[~clicked]
    sig = sigmoid(s_other[None, :] - s_click[:, None])  # [i, j]: ∂softplus(s_j − s_i)/∂s_j
    n_pairs = np.float32(max(1, sig.size))
    out = np.zeros_like(logits)
    out[~clicked] = sig.sum(axis=0) / n_pairs
    out[clicked] = -sig.sum(axis=1) / n_pairs
    return out
