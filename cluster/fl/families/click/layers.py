"""The click models' layers on one client's unpadded samples, forward and backward written out by
hand on numpy arrays (no client axis): ``kernel.py`` composes them into DLRM and DIN.

Every array is one client's own, so every matrix product has a shape fixed by that client alone
and every reduction adds that client's terms in an order fixed by its data: its result is the
same bits whichever other clients train in the same process. Matrix products go to numpy's
OpenBLAS, which packs its operands before multiplying, so a product does not depend on where in
memory an operand sits either (torch's MKL measured otherwise: it rounds differently at other
alignments). Training holds OpenBLAS to one thread (``cluster.blas``), as torch is.
"""

from __future__ import annotations

from typing import NamedTuple, Optional

import numpy as np

from cluster.fl.client_sgd import sigmoid


class Segments(NamedTuple):
    """Consecutive runs of rows that each add up into one output row: ``targets`` (k,) the output
    rows that have any, ``starts`` (k,) where each run begins; ``n_out`` output rows in all."""

    targets: np.ndarray
    starts: np.ndarray
    n_out: int

    def sum(self, values: np.ndarray) -> np.ndarray:
        """(n_out, *rest): each run's rows added in order; zero where a row has none."""
        out = np.zeros((self.n_out, *values.shape[1:]), values.dtype)
        if len(self.targets):
            out[self.targets] = np.add.reduceat(values, self.starts, axis=0)
        return out


class RowSums(NamedTuple):
    """Adds rows into table rows, each table row's terms in input order: the input taken in
    ``order`` (sorted stably by target row), each run from ``starts`` summed into row ``rows[i]``
    (``np.add.at`` would be ten times slower)."""

    order: np.ndarray
    starts: np.ndarray
    rows: np.ndarray

    def sums(self, values: np.ndarray) -> np.ndarray:
        """(len(rows), d): row i the sum of the values bound for ``rows[i]``."""
        if not len(self.rows):
            return np.zeros((0, values.shape[1]), values.dtype)
        return np.add.reduceat(values[self.order], self.starts, axis=0)


class Layer(NamedTuple):
    """What one layer's backward pass needs: its input x, its pre-activation z and, for Dice, σ(z).
    (A tuple: a client builds a handful a step, and a frozen dataclass costs several times more.)"""

    x: np.ndarray
    z: np.ndarray
    p: Optional[np.ndarray] = None


class Grads(dict):
    """Gradients by parameter name; with ``into`` (name → a zeroed array of the parameter's
    shape, a view into a round's outputs), each is written straight there."""

    def __init__(self, into: Optional[dict[str, np.ndarray]] = None):
        super().__init__()
        self.into = into or {}

    def product(self, name: str, a: np.ndarray, b: np.ndarray) -> None:
        self[name] = np.matmul(a, b, out=self.into.get(name))

    def column_sums(self, name: str, x: np.ndarray) -> None:
        """The sums of x's (n, m) columns, as one BLAS product (numpy's own column reduction is
        several times slower); like a matrix product, its rounding follows the shape alone."""
        self.product(name, np.ones(len(x), x.dtype), x)

    def put(self, name: str, value: np.ndarray) -> None:
        if name in self.into:
            self.into[name][...] = value
            value = self.into[name]
        self[name] = value


def dice(z: np.ndarray, alpha: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Dice without batch norm, x·(α + (1 − α)·σ(x)); returns it and σ(x)."""
    p = sigmoid(z)
    y = p * (1 - alpha)
    y += alpha
    y *= z
    return y, p


def dice_backward(
    dy: np.ndarray, z: np.ndarray, p: np.ndarray, alpha: np.ndarray, grads: Grads, alpha_name: str
) -> np.ndarray:
    """∂/∂x = α + (1 − α)·(p + x·p·(1 − p)), returned; ∂/∂α = Σ_rows x·(1 − p)·dy, into ``grads``."""
    z_one_minus_p = z - z * p
    grads.column_sums(alpha_name, dy * z_one_minus_p)
    slope = p * z_one_minus_p
    slope += p
    slope *= 1 - alpha
    slope += alpha
    slope *= dy
    return slope


def mlp_forward(
    params: dict[str, np.ndarray],
    prefix: str,
    x: np.ndarray,
    n_layers: int,
    act: str,
    last_relu: bool = False,
    first: int = 0,
) -> tuple[np.ndarray, list[Layer]]:
    """Layers ``prefix.{first} .. prefix.{n_layers-1}`` on x (n, in): ``act`` ('relu' or 'dice')
    between them, a ReLU after the last with ``last_relu``. Returns the output and each layer's
    ``Layer`` for ``mlp_backward`` (a ReLU layer keeps its output as z: its sign is the mask)."""
    layers = []
    for k in range(first, n_layers):
        z = x @ params[f"{prefix}.{k}.weight"]
        z += params[f"{prefix}.{k}.bias"]
        p = None
        if k < n_layers - 1 and act == "dice":
            out, p = dice(z, params[f"{prefix}.{k}.alpha"])
        elif k < n_layers - 1 or last_relu:
            out = np.maximum(z, np.float32(0), out=z)
        else:
            out = z
        layers.append(Layer(x, z, p))
        x = out
    return x, layers


def mlp_backward(
    params: dict[str, np.ndarray],
    prefix: str,
    layers: list[Layer],
    dout: np.ndarray,
    act: str,
    grads: Grads,
    last_relu: bool = False,
    input_grad: bool = True,
    first: int = 0,
) -> Optional[np.ndarray]:
    """Puts the weight, bias (and α) gradients of layers ``first..`` in ``grads`` given dout, the
    gradient of the MLP's output; returns the gradient of their input (None without
    ``input_grad``)."""
    n_layers = first + len(layers)
    d = dout
    for k in reversed(range(first, n_layers)):
        layer, name = layers[k - first], f"{prefix}.{k}"
        if k < n_layers - 1 and act == "dice":
            assert layer.p is not None
            d = dice_backward(d, layer.z, layer.p, params[f"{name}.alpha"], grads, f"{name}.alpha")
        elif k < n_layers - 1:
            d *= layer.z > 0  # d is this function's own product of the layer above
        elif last_relu:
            d = d * (layer.z > 0)
        weight = params[f"{name}.weight"]
        grads.product(f"{name}.weight", layer.x.T, d)
        grads.column_sums(f"{name}.bias", d)
        if k > first or input_grad:
            # One output column: the product is an outer one, which BLAS takes slowly.
            d = np.multiply.outer(d[:, 0], weight[:, 0]) if weight.shape[1] == 1 else d @ weight.T
    return d if input_grad else None
