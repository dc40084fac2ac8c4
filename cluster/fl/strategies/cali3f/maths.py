"""Cali3F's server and device maths (Zhu, Si, Wang, Xiao 2022, "Cali3F: Calibrated Fast Fair
Federated Recommendation System"): CaliUp for the cluster models (eq. 6) and FastAgg for the
embeddings (eqs. 3–5). The clusters themselves (ClusSamp, re-clustering, ClusAvg) live in
``clustering.py``; FastAgg's row-weighted mean is ``cluster/fl/aggregation.fastagg_items``, which
each model family applies to its own embedding tables (``ModelOps.fastagg``).

The model splits into the private user embeddings U (``spec.user_tables``), the item
embeddings I (``spec.item_tables``) and the non-embedding part N (``spec.dense_shapes()``). The
server keeps one global model w (I and N) and, per cluster p, a cluster model whose N part v_p
is personalised by CaliUp; I is shared (FastAgg) and a client is served by its cluster's N part.
Each round a delegate trains on its own data and uploads its N-part gradient at w (→ FedAvg of
the global N) and at v_p (→ CaliUp), its item-row deltas (→ FastAgg), and its user-vector delta
(→ eq. 4). A delegate therefore runs two passes: ``COMPUTE_MULTIPLIER`` for the virtual clock.

Privacy: the server holds only what a client would upload, never a user vector.
- Eq. 4 moves a *subordinate's* private vector by λ × the mean update of its cluster's
  delegates. It runs on the subordinate's device (in the simulation: the worker actor that
  holds the vector): the server computes the per-cluster mean of the delegates' uploaded
  deltas (``cluster_mean_update``) and broadcasts P vectors per user table; every subordinate
  applies its cluster's one (``subordinate_user_update``). A subordinate sends nothing, and the
  server would need only the per-cluster sum, so the delegates' deltas fit secure aggregation.
  The simulation sums them on the aggregator in client-id order (bit-identical whatever the
  number of workers); the aggregator code uses nothing but the mean.
- Re-clustering on user embeddings is a federated Lloyd step (see clustering.py): devices
  report their nearest centroid and per-cluster sums, never their vector.
- A client's cluster id is known to the server (it must send the right v_p), as are the
  privacy-neutral metadata that seed the clusters (age bucket, gender, occupation by default).

Where the paper is open, we chose (and say so at the function):
- eq. 6's calibration term pulls v_p *toward* w (the paper calibrates local models "with the
  global model", as Ditto's proximal term does); its length is φ‖∇F_p‖ whatever ‖w − v_p‖;
  norms are taken over the whole N part, all tensors flattened together; w = v_p gives no
  calibration (the direction is undefined and there is nothing to correct);
- eq. 5's weight of a delegate's item row is the L1 norm of that row's change, per item table;
- eq. 4's mean over delegates is unweighted, as written.
"""

from __future__ import annotations

import numpy as np


# A delegate computes its gradient at w and at v_p: two forward/backward passes per step.
COMPUTE_MULTIPLIER = 2.0


def init_cluster_models(dense: dict[str, np.ndarray], n_clusters: int) -> dict[str, np.ndarray]:
    """Every cluster's N part starts as the global one: dense[name] (*shape) → (P, *shape)."""
    return {name: np.repeat(v[None], n_clusters, axis=0) for name, v in dense.items()}


def pseudo_gradient(deltas: dict[str, np.ndarray], lr: float) -> dict[str, np.ndarray]:
    """∇F from an uploaded model delta: one full-batch SGD step of rate lr gives Δ = −lr·∇F, so
    −Δ/lr is exactly the gradient; after several local steps it is their summed path gradient."""
    return {name: -d / np.float32(lr) for name, d in deltas.items()}


def cluster_gradients(
    per_client: dict[str, np.ndarray], n_samples: np.ndarray, cluster_of: np.ndarray, n_clusters: int
) -> dict[str, np.ndarray]:
    """∇F_p of eq. 6: the sample-weighted mean of cluster p's delegates' gradients.

    per_client[name]: (D, *shape) in client-id order; n_samples, cluster_of: (D,).
    Returns (P, *shape); a cluster without delegates gets a zero gradient (CaliUp then leaves
    its model unchanged: the calibration term scales with ‖∇F_p‖ too)."""
    weight = np.zeros((n_clusters, len(cluster_of)), dtype=np.float64)
    weight[cluster_of, np.arange(len(cluster_of))] = n_samples
    total = weight.sum(axis=1, keepdims=True)
    weight = np.divide(weight, total, out=np.zeros_like(weight), where=total > 0)
    return {name: np.tensordot(weight, g.astype(np.float64), axes=1).astype(g.dtype) for name, g in per_client.items()}


def _norms(tensors: dict[str, np.ndarray]) -> np.ndarray:
    """‖·‖₂ per cluster (P,) over all tensors (P, *shape) flattened together."""
    return np.sqrt(sum(np.square(t.astype(np.float64)).reshape(len(t), -1).sum(axis=1) for t in tensors.values()))


def cali_update(
    models: dict[str, np.ndarray],
    global_dense: dict[str, np.ndarray],
    grads: dict[str, np.ndarray],
    lr: float,
    phi: float,
) -> dict[str, np.ndarray]:
    """CaliUp (eq. 6) for every cluster's N part at once:

        v_p ← v_p − η (∇F_p + φ · ‖∇F_p‖ / ‖v_p − w‖ · (v_p − w)).

    models[name], grads[name]: (P, *shape); global_dense[name]: (*shape). The calibration term
    has length φ‖∇F_p‖ and points from v_p to w, so the cluster model is held near the global
    one by a force as large as its own gradient (φ = 0: plain SGD, independent cluster models).
    Where v_p = w the term is zero. Returns new models, same shapes and dtypes."""
    diff = {name: models[name].astype(np.float64) - global_dense[name].astype(np.float64)[None] for name in models}
    grad64 = {name: grads[name].astype(np.float64) for name in models}
    distance = _norms(diff)
    scale = np.divide(phi * _norms(grad64), distance, out=np.zeros_like(distance), where=distance > 0)
    out = {}
    for name, v in models.items():
        s = scale.reshape(-1, *([1] * (v.ndim - 1)))
        out[name] = (v.astype(np.float64) - lr * (grad64[name] + s * diff[name])).astype(v.dtype)
    return out


def cluster_mean_update(user_deltas: np.ndarray, cluster_of: np.ndarray, n_clusters: int) -> np.ndarray:
    """Server half of eq. 4: the mean user-vector update of each cluster's delegates.

    user_deltas: (D, d) the delegates' uploaded u_new − u_old, client-id order; cluster_of: (D,).
    Returns (P, d); zero for a cluster without delegates (its subordinates stay put)."""
    counts = np.bincount(cluster_of, minlength=n_clusters).astype(np.float64)
    sums = np.zeros((n_clusters, user_deltas.shape[1]), dtype=np.float64)
    np.add.at(sums, cluster_of, user_deltas.astype(np.float64))
    return np.divide(sums, counts[:, None], out=np.zeros_like(sums), where=counts[:, None] > 0).astype(np.float32)


def subordinate_user_update(
    users: np.ndarray, cluster_of: np.ndarray, mean_update: np.ndarray, discount: float
) -> np.ndarray:
    """Device half of eq. 4: u_s ← u_s + λ · Δ̄_{p(s)}, λ = ``discount`` (a subordinate did not
    train, so it borrows a damped share of its cluster's movement). Delegates keep their own
    trained vectors (eq. 3) and are not passed here.

    users: (S, d) the subordinates' private vectors; cluster_of: (S,); mean_update: (P, d).
    Returns new vectors (S, d) float32."""
    return (users + np.float32(discount) * mean_update[cluster_of]).astype(np.float32)
