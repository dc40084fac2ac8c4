"""Ditto (``cluster/fl/ditto.py``) on the click models: each phone keeps a personal copy of the
model's dense part N (every MLP, DIN's attention, the Dice slopes) and steps it toward its own
data and the global model it just received; the embedding tables are shared and stay the global
ones, as NCF's personal step holds the item rows fixed. A click model has no user table, so N is
all a phone can personalise.

Each client steps and scores alone, as in local training (``families/click/training.py``), so its
personal model and its scores do not depend on which clients share its worker. The steps are the
one recipe's (``cluster/fl/client_sgd.py``) with only the dense part trained.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from cluster.fl.client_sgd import Anchor, Outputs, client_sgd, sigmoid
from cluster.fl.families.click.features import ClickFeatures
from cluster.fl.families.click.kernel import forward
from cluster.blas import blas_one_thread
from cluster.fl.families.click.model import ClickSpec
from cluster.fl.families.click.samples import client_samples
from cluster.fl.families.click.training import click_model
from cluster.fl.recipe import LocalRecipe


def _float32(params: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    return {name: np.ascontiguousarray(value, dtype=np.float32) for name, value in params.items()}


def personal_sgd(
    spec: ClickSpec,
    recipe: LocalRecipe,
    global_params: dict[str, np.ndarray],
    personal: dict[str, np.ndarray],
    features: ClickFeatures,
    indptr: np.ndarray,
    rows: np.ndarray,
) -> dict[str, np.ndarray]:
    """Ditto's personal steps (Alg. 1, line 7) for the CSR's clients: the recipe's epochs of
    v ← v − lr(∇F_c(v) + λ(v − w)) on each client's loss over its rows, λ the recipe's
    ``personal_lambda``, with the embedding tables at the global model w.
    personal[name]: (C, *shape) in CSR order; returns the new ones."""
    global_params = _float32(global_params)
    lam = recipe.personal_lambda
    if lam is None:
        raise ValueError("Ditto's personal steps need the recipe's personal_lambda")
    recipe = replace(recipe, proxy_gradient=False)  # what a personal step reports goes nowhere
    proximal = Anchor(lam, {name: global_params[name] for name in personal})
    rates = {name: recipe.lr_dense for name in personal}
    out = {name: np.zeros_like(value, dtype=np.float32) for name, value in personal.items()}
    with blas_one_thread():
        for c, samples in enumerate(client_samples(spec, features, indptr, rows)):
            params = global_params | _float32({name: value[c] for name, value in personal.items()})
            mine = Outputs({name: out[name][c] for name in personal}, {})
            client_sgd(
                recipe, params, rates, click_model(spec, samples, tables=False), samples.labels, proximal, out=mine
            )
            for name in personal:
                out[name][c] += params[name]
    return out


def personal_predict(
    spec: ClickSpec,
    global_params: dict[str, np.ndarray],
    personal: dict[str, np.ndarray],
    features: ClickFeatures,
    indptr: np.ndarray,
    rows: np.ndarray,
) -> np.ndarray:
    """Click probabilities of the CSR's rows (in CSR order), each under its client's personal
    model: its own dense part ``personal[name]`` (C, *shape) with the global embedding tables."""
    global_params = _float32(global_params)
    out = np.empty(len(rows), dtype=np.float32)
    with blas_one_thread():
        for c, samples in enumerate(client_samples(spec, features, indptr, rows)):
            params = global_params | _float32({name: value[c] for name, value in personal.items()})
            out[indptr[c] : indptr[c + 1]] = sigmoid(forward(spec, params, samples)[0])
    return out
