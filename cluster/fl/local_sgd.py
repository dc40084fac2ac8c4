"""The one local-SGD loop every model family trains its clients with, and the one recipe that
says how: C clients at once, each on its own copy of the parameters (a leading client axis),
full-batch steps on each client's masked BCE, a learning rate per parameter group.

A family supplies only its forward pass (logits (C, L) from the leaves it created) and the
padded labels and mask; the loop owns the loss, its reduction, the gradient, Ditto's proximal
term, CEAG's pairwise proxy and the first step's report. Two families train outside it, with
hand-written gradients in numpy, because that is several times faster: GMF
(``families/ncf/gmf_training.py``) and the click models, one client at a time through the same
recipe in ``cluster/fl/client_sgd.py``; both are tested against this loop.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Optional

import numpy as np
import torch
import torch.nn.functional as F

from cluster.fl.proximal import proximal_step
from cluster.fl.recipe import LocalRecipe


@dataclass(frozen=True)
class ParamGroups:
    """The leaves the loop steps, by group; each (C, *shape) and requiring grad. A tensor the
    forward reads but that is not here (a frozen table) is not trained."""

    item: dict[str, torch.Tensor] = field(default_factory=dict)
    dense: dict[str, torch.Tensor] = field(default_factory=dict)
    user: dict[str, torch.Tensor] = field(default_factory=dict)

    def with_rates(self, recipe: LocalRecipe) -> list[tuple[str, torch.Tensor, float]]:
        return [
            (name, tensor, lr)
            for group, lr in ((self.item, recipe.lr_item), (self.dense, recipe.lr_dense), (self.user, recipe.lr_user))
            for name, tensor in group.items()
        ]


@dataclass(frozen=True)
class FirstStep:
    """What the clients' first step saw, at the model they received: each one's mean BCE (C,),
    the logits (C, L) and, with ``recipe.proxy_gradient``, −lr × its pairwise-logistic gradient
    per trained tensor (else {})."""

    loss: np.ndarray
    logits: np.ndarray
    proxy: dict[str, np.ndarray]


@dataclass(frozen=True)
class Proximal:
    """Ditto's personal step (``cluster/fl/proximal.proximal_step``: λ(v − anchor) added to the
    gradient) for every tensor named in ``anchor``."""

    strength: float
    anchor: dict[str, torch.Tensor]


@dataclass(frozen=True)
class Targets:
    """What each client's logits are scored against: labels and mask (C, L), the mask 0 on
    padding, and count (C,) each client's real samples."""

    labels: torch.Tensor
    mask: torch.Tensor
    count: torch.Tensor


def local_sgd(
    recipe: LocalRecipe,
    groups: ParamGroups,
    logits_of: Callable[[], torch.Tensor],
    targets: Targets,
    proximal: Optional[Proximal] = None,
    correction: Optional[dict[str, torch.Tensor]] = None,
) -> FirstStep:
    """``recipe.epochs`` steps on the leaves in ``groups``, in place. ``logits_of()`` runs the
    forward pass on them; ``targets`` holds what it is scored against.
    ``correction[name]`` (C, *shape): added to that leaf's gradient at every step (SCAFFOLD's
    control-variate correction c − c_i)."""
    labels, mask, count = targets.labels, targets.mask, targets.count
    trained = groups.with_rates(recipe)
    leaves = [tensor for _, tensor, _ in trained]
    if recipe.prox_mu and proximal is None:
        # FedProx: the shared tensors as received anchor every step; the user table is private.
        shared = {**groups.item, **groups.dense}
        proximal = Proximal(recipe.prox_mu, {name: t.detach().clone() for name, t in shared.items()})
    first: Optional[FirstStep] = None
    for _ in range(recipe.epochs):
        logits = logits_of()
        summed = (F.binary_cross_entropy_with_logits(logits, labels, reduction="none") * mask).sum(dim=1)
        if first is None:
            first = FirstStep(
                (summed.detach() / count).numpy(),
                logits.detach().numpy().copy(),
                _proxy(recipe, trained, logits, labels, mask),
            )
        per_client = summed / count if recipe.loss_reduction == "mean" else summed
        # Each client's loss only touches its own copy, so the gradient of the sum is every
        # client's own gradient, computed in one backward pass.
        grads = torch.autograd.grad(per_client.sum(), leaves)
        with torch.no_grad():
            for (name, param, lr), grad in zip(trained, grads):
                if correction is not None and name in correction:
                    grad = grad + correction[name]
                if proximal is not None and name in proximal.anchor:
                    param.copy_(
                        proximal_step({name: param}, proximal.anchor, {name: grad}, lr, proximal.strength)[name]
                    )
                else:
                    param.sub_(lr * grad)
    assert first is not None, "a recipe has at least one epoch"
    return first


def _proxy(
    recipe: LocalRecipe, trained, logits: torch.Tensor, labels: torch.Tensor, mask: torch.Tensor
) -> dict[str, np.ndarray]:
    if not recipe.proxy_gradient:
        return {}
    grads = torch.autograd.grad(
        pairwise_logistic(logits, labels, mask).sum(), [t for _, t, _ in trained], retain_graph=True, allow_unused=True
    )
    return {
        name: (torch.zeros_like(param) if grad is None else -lr * grad).numpy()
        for (name, param, lr), grad in zip(trained, grads)
    }


def pairwise_logistic(logits: torch.Tensor, labels: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """(c,) each client's mean log(1 + exp(−(s_click − s_nonclick))) over its own (click,
    non-click) pairs, the differentiable form of its pairwise bits; 0 for a client without pairs."""
    real = mask > 0
    clicked, other = real & (labels >= 0.5), real & (labels < 0.5)
    pairs = (clicked.unsqueeze(2) & other.unsqueeze(1)).to(logits.dtype)
    losses = F.softplus(logits.unsqueeze(1) - logits.unsqueeze(2))  # [c, i, j]: softplus(s_j − s_i)
    return (losses * pairs).sum(dim=(1, 2)) / pairs.sum(dim=(1, 2)).clamp(min=1.0)
