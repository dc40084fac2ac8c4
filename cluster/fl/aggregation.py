"""FedAvg over client updates (the server optimizers that apply the average: ``server_optimizers/``).

Updates are summed in ascending client id, whichever worker sent them, so the floating-point
result does not depend on how clients were spread over worker actors.
"""

from __future__ import annotations

from typing import Callable

import numpy as np
from scipy import sparse

from cluster.arrays import ranges
from cluster.fl.compression import masked_average
from cluster.fl.types import ClientUpdate


def merge_updates(results: list[ClientUpdate], empty: ClientUpdate) -> ClientUpdate:
    """One update of all clients in ``results``, ordered by client id (``empty`` when there are none)."""
    results = [r for r in results if len(r.clients)]
    if not results:
        return empty
    clients = np.concatenate([r.clients for r in results])
    order = np.argsort(clients, kind="stable")
    rank = np.empty_like(order)
    rank[order] = np.arange(len(order))
    offsets = np.cumsum([0] + [len(r.clients) for r in results[:-1]])
    row_owner = np.concatenate([rank[r.row_owner + off] for r, off in zip(results, offsets)])
    row_order = np.argsort(row_owner, kind="stable")
    row_place = np.empty_like(row_order)
    row_place[row_order] = np.arange(len(row_order))

    def cat(name: str) -> np.ndarray:
        return np.concatenate([getattr(r, name) for r in results])

    def by_name(name: str) -> dict[str, np.ndarray]:
        return {n: np.concatenate([getattr(r, name)[n] for r in results]) for n in getattr(results[0], name)}

    def rows_in_order(name: str) -> dict[str, np.ndarray]:
        return {n: _placed([getattr(r, name)[n] for r in results], row_place) for n in getattr(results[0], name)}

    return ClientUpdate(
        clients=clients[order],
        n_samples=cat("n_samples")[order],
        loss=cat("loss")[order],
        dense_deltas={n: v[order] for n, v in by_name("dense_deltas").items()},
        item_ids=_placed([r.item_ids for r in results], row_place),
        row_owner=row_owner[row_order].astype(np.int32),
        item_deltas=rows_in_order("item_deltas"),
        touched_rows=_merge_per_client(results, "touched_rows", order),
        fractions=_merge_fractions(results, order),
        **dict(zip(("correct", "correct_counts"), merge_reported(results, order))),
        proxy_deltas={n: v[order] for n, v in by_name("proxy_deltas").items()},
        cluster_dense_deltas=merge_optional(results, "cluster_dense_deltas", order),
        user_deltas=merge_optional(results, "user_deltas", order),
        control_deltas=merge_optional(results, "control_deltas", order),
    )


def _placed(parts: list[np.ndarray], place: np.ndarray) -> np.ndarray:
    """``np.concatenate(parts)`` with its row i at ``place[i]``: one pass over rows that may fill
    megabytes a round, where a concatenation and then a reordering copy would make two."""
    out = np.empty((len(place), *parts[0].shape[1:]), dtype=np.result_type(*parts))
    rows, offset = _records(out), 0
    for part in parts:
        rows[place[offset : offset + len(part)]] = _records(np.ascontiguousarray(part, dtype=out.dtype))
        offset += len(part)
    return out


def _records(array: np.ndarray) -> np.ndarray:
    """``array``'s rows, each as one opaque item of its bytes (a view): numpy moves such items
    several times faster than it moves rows of numbers element by element."""
    row_bytes = array.itemsize * int(np.prod(array.shape[1:]))
    if array.ndim < 2 or row_bytes == 0:
        return array
    return array.reshape(len(array), -1).view(np.dtype((np.void, row_bytes))).reshape(len(array))


def _merge_per_client(results: list[ClientUpdate], name: str, order: np.ndarray) -> np.ndarray | None:
    """A (C,) array some model families send and others do not (None)."""
    parts = [getattr(r, name) for r in results]
    return None if any(p is None for p in parts) else np.concatenate(parts)[order]


def _merge_fractions(results: list[ClientUpdate], order: np.ndarray) -> np.ndarray | None:
    """The clients' widths in merged order; None when every client trained the whole model."""
    if all(r.fractions is None for r in results):
        return None
    return np.concatenate(
        [np.ones(len(r.clients), np.float32) if r.fractions is None else r.fractions for r in results]
    )[order]


def merge_reported(results: list, order: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Every result's per-client reported values (``correct``, ``correct_counts`` per client,
    concatenated client after client) in the merged client order ``order``."""
    counts = np.concatenate([r.correct_counts for r in results]).astype(np.int64)
    correct = np.concatenate([r.correct for r in results]).astype(np.float32)
    if len(counts) == 0:  # nothing reported (no fairness mitigation)
        return correct, counts
    starts = np.cumsum(counts) - counts
    return correct[ranges(starts[order], counts[order])], counts[order]


def merge_optional(results: list[ClientUpdate], field: str, order: np.ndarray) -> dict[str, np.ndarray] | None:
    """A per-client field that only some strategies upload: all results have it, or none do."""
    parts = [getattr(r, field) for r in results]
    if all(p is None for p in parts):
        return None
    if any(p is None for p in parts):
        raise ValueError(f"some uploads carry {field} and some do not: workers trained under different strategies")
    return {name: np.concatenate([p[name] for p in parts])[order] for name in parts[0]}


def empty_update(dense_shapes: dict[str, tuple[int, ...]], item_tables: dict[str, int] | None = None) -> ClientUpdate:
    """No clients: dense parts (0, *shape), and rows (0, d) of each sparsely sent table (name: d)."""
    return ClientUpdate(
        clients=np.zeros(0, np.int64),
        n_samples=np.zeros(0, np.int64),
        loss=np.zeros(0, np.float32),
        dense_deltas={n: np.zeros((0, *s), np.float32) for n, s in dense_shapes.items()},
        item_deltas={t: np.zeros((0, d), np.float32) for t, d in (item_tables or {}).items()},
        touched_rows=None if item_tables is None else np.zeros(0, np.int64),
    )


def fedavg(
    merged: ClientUpdate,
    n_rows: int,
    weights: np.ndarray | None = None,
    channel_masks: Callable[[float], dict[str, np.ndarray]] | None = None,
) -> dict[str, np.ndarray]:
    """Σ_c n_c Δ_c / Σ_c n_c over the kept clients (McMahan et al. 2017), for every parameter
    they sent; a sparsely sent table has ``n_rows`` rows, and a row a client did not send counts
    as a zero update. ``weights`` (C,) replace n_c / Σ n: they sum to 1 and may be negative
    (CEAG's re-weighting). When some clients trained narrowed models (``merged.fractions``),
    each dense entry is averaged only over the clients whose sub-model holds it (HeteroFL: zeros
    outside a slice are "not trained", not "no change"), ``channel_masks(width)`` giving the
    entries a width holds."""
    total = float(merged.n_samples.sum())
    if total == 0:
        return {}
    weights = (merged.n_samples / total if weights is None else np.asarray(weights)).astype(np.float32)
    delta: dict[str, np.ndarray] = {}
    row_weight = weights[merged.row_owner][:, None]
    for table, rows in merged.item_deltas.items():
        # A sparse (table row × uploaded row) matrix with one entry per uploaded row, its
        # weight: stored by column, it takes the uploads as they are (no sort), and its product
        # adds each table row's weighted uploads in array order (client-sorted), in one pass:
        # a fixed summation order.
        n_uploaded = len(merged.item_ids)
        uploads = sparse.csc_array(
            (row_weight[:, 0], merged.item_ids, np.arange(n_uploaded + 1)), shape=(n_rows, n_uploaded)
        )
        delta[table] = (uploads @ rows).astype(np.float32, copy=False)
    if merged.fractions is not None:
        if channel_masks is None:
            raise ValueError("clients trained narrowed models (fractions), so fedavg needs their channel_masks")
        masks = {float(f): channel_masks(float(f)) for f in np.unique(merged.fractions)}
        sample_weights = merged.n_samples / total
        delta.update(
            {
                name: masked_average(
                    value, np.stack([masks[float(f)][name] for f in merged.fractions]), weights, sample_weights
                )
                for name, value in merged.dense_deltas.items()
            }
        )
        return delta
    for name, value in merged.dense_deltas.items():
        delta[name] = np.add.reduce(value * weights.reshape(-1, *([1] * (value.ndim - 1))), axis=0, dtype=np.float32)
    return delta


def add_weighted_deltas(
    average: dict[str, np.ndarray], deltas: dict[str, np.ndarray], coefficients: np.ndarray
) -> dict[str, np.ndarray]:
    """``average`` plus Σ_c k_c deltas[name][c] per tensor (deltas (C, *shape), k (C,)), summed
    in the given (client-id) order; a plain sum, not an average: CEAG's pairwise-proxy term."""
    coefficients = np.asarray(coefficients, np.float32)
    out = dict(average)
    for name, delta in deltas.items():
        term = np.add.reduce(delta * coefficients.reshape(-1, *([1] * (delta.ndim - 1))), axis=0, dtype=np.float32)
        out[name] = out[name] + term if name in out else term
    return out


def fastagg_items(item_ids: np.ndarray, row_deltas: np.ndarray, n_items: int) -> np.ndarray:
    """FastAgg for one item table (eq. 5): every item a delegate changed moves to the weighted
    mean of the delegates' new rows, weight a_{d,i} = ‖I_d[i] − I[i]‖₁,

        I[i] ← Σ_d a_{d,i} I_d[i] / Σ_d a_{d,i} = I[i] + Σ_d a_{d,i} Δ_{d,i} / Σ_d a_{d,i}.

    item_ids: (R,), row_deltas: (R, d), rows in client-id order (as ``merge_updates`` gives).
    Returns the update (n_items, d) float32 to add (server SGD at lr 1 applies eq. 5 exactly).
    Unlike FedAvg, a client that did not touch an item does not dilute its update; a row no
    delegate changed (a_{d,i} = 0 for all d) stays as it is."""
    deltas = np.asarray(row_deltas, dtype=np.float64)
    weight = np.abs(deltas).sum(axis=1)
    total = np.bincount(item_ids, weights=weight, minlength=n_items)
    # bincount adds in array order: a fixed summation order, as in fedavg.
    summed = np.stack(
        [np.bincount(item_ids, weights=weight * deltas[:, k], minlength=n_items) for k in range(deltas.shape[1])],
        axis=1,
    )
    return np.divide(summed, total[:, None], out=np.zeros_like(summed), where=total[:, None] > 0).astype(np.float32)


def fastagg_item_deltas(merged: ClientUpdate, item_tables: tuple[str, ...], n_items: int) -> dict[str, np.ndarray]:
    """``fastagg_items`` for every item table of the delegates' merged upload, weighted per table."""
    return {t: fastagg_items(merged.item_ids, merged.item_deltas[t], n_items) for t in item_tables}


def fastagg_dense_rows(row_deltas: np.ndarray) -> np.ndarray:
    """``fastagg_items`` for a table every delegate uploads whole (C, n_rows, d), client-id order:
    a row a delegate did not change has weight zero, so it counts as not sent. Returns (n_rows, d)."""
    deltas = np.asarray(row_deltas, dtype=np.float64)
    weight = np.abs(deltas).sum(axis=2)
    total = np.add.reduce(weight, axis=0)
    summed = np.add.reduce(weight[:, :, None] * deltas, axis=0)  # over clients in id order: fixed
    return np.divide(summed, total[:, None], out=np.zeros_like(summed), where=total[:, None] > 0).astype(np.float32)
