"""Ditto (Li, Hu, Beirami, Smith, ICML 2021): every client keeps a personal model v regularised
toward the global model w, which is itself trained by plain FedAvg. Each round a selected
client takes its usual FedAvg step on w *and* personal steps on v (Alg. 1):

    v ← v − η (∇F_k(v) + λ (v − w)),

with w the global model the client received this round and λ fixed. Both are trained each
round, so a client computes twice (``COMPUTE_MULTIPLIER``) — what the virtual clock should show.

The step is written with plain arithmetic, so it takes numpy arrays or torch tensors alike
(inside the local loop, ∇F_k(v) comes from autograd); v may carry a leading client axis
(C, *shape) against w's (*shape).
"""

from __future__ import annotations

from typing import Protocol, TypeVar


class Steppable(Protocol):
    """What the step's arithmetic needs of an array: numpy arrays and torch tensors both have it."""

    def __add__(self: Array, other: Array, /) -> Array: ...

    def __sub__(self: Array, other: Array, /) -> Array: ...

    def __rmul__(self: Array, other: float, /) -> Array: ...


Array = TypeVar("Array", bound=Steppable)

# Equal local work on the personal and the global model doubles a round's compute.
COMPUTE_MULTIPLIER = 2.0


def personal_step(
    personal: dict[str, Array], global_params: dict[str, Array], grads: dict[str, Array], lr: float, lam: float
) -> dict[str, Array]:
    """One Ditto personal step (Alg. 1, line 7) for every tensor of the personal model.

    personal[name], grads[name]: (*shape) or (C, *shape); global_params[name]: (*shape).
    λ = 0 gives plain local SGD (a purely local model); a large λ holds v at w."""
    if lam < 0:
        raise ValueError(f"Ditto's λ must be >= 0, got {lam}")
    return {name: v - lr * (grads[name] + lam * (v - global_params[name])) for name, v in personal.items()}
