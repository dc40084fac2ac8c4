"""The server's half of a click-model round, in numpy: merge the workers' uploads in client-id
order and average them (HeteroFL-masked where clients trained narrowed models)."""

from __future__ import annotations

import numpy as np

from cluster.fl.aggregation import merge_optional, merge_reported
from cluster.fl.compression import masked_average
from cluster.fl.types import ClickLocalResult
from cluster.models.click import ClickSpec, channel_masks


def merge_click_results(results: list[ClickLocalResult]) -> ClickLocalResult:
    """One result of all clients in ``results``, ordered by client id (a fixed summation order
    for the average, whichever worker trained whom)."""
    results = [r for r in results if len(r.clients)]
    if not results:
        raise ValueError("no client results to merge")
    order = np.argsort(np.concatenate([r.clients for r in results]), kind="stable")
    cat = lambda name: np.concatenate([getattr(r, name) for r in results])[order]  # noqa: E731
    correct, correct_counts = merge_reported(results, order)
    return ClickLocalResult(
        clients=cat("clients"),
        n_samples=cat("n_samples"),
        loss=cat("loss"),
        fractions=cat("fractions"),
        deltas={name: np.concatenate([r.deltas[name] for r in results])[order] for name in results[0].deltas},
        correct=correct,
        correct_counts=correct_counts,
        proxy_deltas={name: np.concatenate([r.proxy_deltas[name] for r in results])[order]
                      for name in results[0].proxy_deltas},
        cluster_dense_deltas=merge_optional(results, "cluster_dense_deltas", order),
    )


def average_deltas(spec: ClickSpec, result: ClickLocalResult, weights: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """FedAvg weighted by sample count: Σ n_c Δ_c / Σ n_c per parameter (or by ``weights`` (C,),
    which must sum to 1 and may be negative: CEAG); when some clients trained narrowed models,
    each entry is averaged only over the clients that hold it (HeteroFL), since zeros outside a
    slice are "not trained", not "no change" — normalized by the sample weights of the clients
    holding it."""
    sample_weights = result.n_samples / result.n_samples.sum()
    weights = np.asarray(sample_weights if weights is None else weights, dtype=np.float32)
    if (result.fractions == 1.0).all():
        return {
            name: np.add.reduce(delta * weights.reshape(-1, *([1] * (delta.ndim - 1))), axis=0, dtype=np.float32)
            for name, delta in result.deltas.items()
        }
    per_fraction = {float(f): channel_masks(spec, float(f)) for f in np.unique(result.fractions)}
    return {
        name: masked_average(delta, np.stack([per_fraction[float(f)][name] for f in result.fractions]), weights,
                             sample_weights)
        for name, delta in result.deltas.items()
    }
