"""Ditto (``cluster/fl/ditto.py``) on the click models: each phone keeps a personal copy of the
model's dense part N (every MLP, DIN's attention, the Dice slopes) and steps it toward its own
data and the global model it just received; the embedding tables are shared and stay the global
ones, as NCF's personal step holds the item rows fixed. A click model has no user table, so N is
all a phone can personalise.

Clients are batched as in local training (``families/click/training.py``): grouped by their own padded
shapes, in fixed-size batches, so a client's personal model and its scores do not depend on which
clients share its worker or batch. The steps are the one local-SGD loop's
(``cluster/fl/local_sgd.py``) with only the dense part in its groups.
"""

from __future__ import annotations

from dataclasses import replace
from functools import partial

import numpy as np
import torch

from cluster.fl.families.click.features import ClickFeatures
from cluster.fl.families.click.batches import grouped_batches
from cluster.fl.families.click.training import one_thread
from cluster.fl.local_sgd import ParamGroups, Proximal, Targets, local_sgd
from cluster.fl.recipe import LocalRecipe
from cluster.fl.families.click.model import ClickSpec
from cluster.fl.families.click.net import ClickBatch, forward


def _with_personal(global_t: dict[str, torch.Tensor], personal: dict[str, torch.Tensor], n: int) -> dict:
    shared = {
        name: value.unsqueeze(0).expand(n, *value.shape) for name, value in global_t.items() if name not in personal
    }
    return {**shared, **personal}


def _personal_logits(
    spec: ClickSpec, global_t: dict[str, torch.Tensor], own: dict[str, torch.Tensor], n: int, batch: ClickBatch
) -> torch.Tensor:
    return forward(spec, _with_personal(global_t, own, n), batch)


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
    global_t = {name: torch.from_numpy(np.ascontiguousarray(v, dtype=np.float32)) for name, v in global_params.items()}
    lam = recipe.personal_lambda
    if lam is None:
        raise ValueError("Ditto's personal steps need the recipe's personal_lambda")
    recipe = replace(recipe, proxy_gradient=False)  # what a personal step reports goes nowhere
    proximal = Proximal(lam, {name: global_t[name] for name in personal})
    out = {name: value.copy() for name, value in personal.items()}
    with one_thread():
        for _, chunk, real, batch in grouped_batches(spec, features, indptr, rows):
            own = {name: torch.from_numpy(value[chunk]).clone().requires_grad_() for name, value in personal.items()}
            local_sgd(
                recipe,
                ParamGroups(dense=own),
                partial(_personal_logits, spec, global_t, own, len(chunk), batch.inputs),
                Targets(batch.labels, batch.mask, torch.from_numpy(batch.counts.astype(np.float32))),
                proximal,
            )
            for name, value in own.items():
                out[name][chunk[:real]] = value.detach()[:real].numpy()
    return out


@torch.no_grad()
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
    global_t = {name: torch.from_numpy(np.ascontiguousarray(v, dtype=np.float32)) for name, v in global_params.items()}
    out = np.empty(len(rows), dtype=np.float32)
    with one_thread():
        for _, chunk, real, batch in grouped_batches(spec, features, indptr, rows):
            own = {name: torch.from_numpy(value[chunk]) for name, value in personal.items()}
            probs = torch.sigmoid(forward(spec, _with_personal(global_t, own, len(chunk)), batch.inputs)).numpy()
            for j, client in enumerate(chunk[:real]):
                out[indptr[client] : indptr[client + 1]] = probs[j, : batch.counts[j]]
    return out
