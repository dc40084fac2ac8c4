"""The proximal SGD step that keeps a local model near an anchor: v ← v − η (∇F(v) + λ (v − w)).

Ditto's personal model is stepped so toward the global model, FedProx's local model toward the one
it received. Written with plain arithmetic, so it takes numpy arrays or torch tensors alike (inside
the local loop, ∇F(v) comes from autograd); v may carry a leading client axis (C, *shape) against
w's (*shape)."""

from __future__ import annotations

from typing import Protocol, TypeVar


class Steppable(Protocol):
    """What the step's arithmetic needs of an array: numpy arrays and torch tensors both have it."""

    def __add__(self: Array, other: Array, /) -> Array: ...

    def __sub__(self: Array, other: Array, /) -> Array: ...

    def __rmul__(self: Array, other: float, /) -> Array: ...


Array = TypeVar("Array", bound=Steppable)


def proximal_step(
    personal: dict[str, Array], global_params: dict[str, Array], grads: dict[str, Array], lr: float, lam: float
) -> dict[str, Array]:
    """One proximal SGD step, v ← v − η (∇F(v) + λ (v − anchor)), for every tensor of ``personal``:
    Ditto's personal step (Alg. 1, line 7) and FedProx's local step alike.

    personal[name], grads[name]: (*shape) or (C, *shape); global_params[name]: (*shape).
    λ = 0 gives plain local SGD (a purely local model); a large λ holds v at w."""
    if lam < 0:
        raise ValueError(f"the proximal strength λ must be >= 0, got {lam}")
    return {name: v - lr * (grads[name] + lam * (v - global_params[name])) for name, v in personal.items()}
