"""Cali3F on tiny hand-computed cases: CaliUp (eq. 6), FastAgg (eqs. 4–5), ClusSamp,
federated re-clustering and ClusAvg. No Ray."""

import numpy as np
import pytest
from sklearn.cluster import KMeans

from cluster.data.types import CategoricalFeatures
from cluster.fl.aggregation import fastagg_item_deltas, fastagg_items
from cluster.fl.strategies.cali3f.maths import (
    cali_update,
    cluster_gradients,
    cluster_mean_update,
    init_cluster_models,
    pseudo_gradient,
    subordinate_user_update,
)
from cluster.fl.strategies.cali3f.clustering import (
    ClusterSampler,
    assign_clusters,
    clus_avg,
    cluster_metadata,
    encode_metadata,
    initial_centroids,
    recluster,
)
from cluster.fl.families.ncf.model import NCFSpec
from cluster.fl.types import ClientUpdate


# --------------------------------------------------------------------------- CaliUp (eq. 6)
def _one(x):
    return np.array([x], dtype=np.float32)


def test_caliup_by_hand():
    # v = (1, 1), w = (1, 3), ∇F = (3, 4): ‖∇F‖ = 5, (v − w)/‖v − w‖ = (0, −1).
    # φ = 0.5: the calibration term is 0.5·5·(0, −1) = (0, −2.5); η = 0.1:
    # v ← (1, 1) − 0.1·((3, 4) + (0, −2.5)) = (0.7, 0.85).
    v = {"n": np.array([[1.0, 1.0]], np.float32)}
    w = {"n": np.array([1.0, 3.0], np.float32)}
    g = {"n": np.array([[3.0, 4.0]], np.float32)}
    new = cali_update(v, w, g, lr=0.1, phi=0.5)
    np.testing.assert_allclose(new["n"], [[0.7, 0.85]], rtol=1e-6)
    # What calibration adds to plain SGD points from v to w and has length η·φ·‖∇F‖ = 0.25.
    calibration = new["n"][0] - (v["n"][0] - 0.1 * g["n"][0])
    np.testing.assert_allclose(calibration, [0.0, 0.25], atol=1e-6)
    assert new["n"].dtype == np.float32


def test_caliup_norms_span_the_whole_n_part():
    # The same 2-d case split over two tensors gives the same step: one norm over all of N.
    v = {"a": _one(1.0)[None], "b": _one(1.0)[None]}
    w = {"a": _one(1.0), "b": _one(3.0)}
    g = {"a": _one(3.0)[None], "b": _one(4.0)[None]}
    new = cali_update(v, w, g, lr=0.1, phi=0.5)
    np.testing.assert_allclose([new["a"][0, 0], new["b"][0, 0]], [0.7, 0.85], rtol=1e-6)


def test_caliup_phi_zero_is_plain_sgd():
    rng = np.random.default_rng(0)
    v = {"n": rng.normal(size=(3, 4)).astype(np.float32)}
    w = {"n": rng.normal(size=4).astype(np.float32)}
    g = {"n": rng.normal(size=(3, 4)).astype(np.float32)}
    new = cali_update(v, w, g, lr=0.3, phi=0.0)
    np.testing.assert_allclose(new["n"], v["n"] - 0.3 * g["n"], rtol=1e-6)


def test_caliup_at_the_global_model_has_no_calibration():
    w = {"n": np.array([2.0, -1.0], np.float32)}
    v = {"n": w["n"][None].copy()}
    g = {"n": np.array([[1.0, 1.0]], np.float32)}
    new = cali_update(v, w, g, lr=0.5, phi=3.0)
    assert np.isfinite(new["n"]).all()
    np.testing.assert_allclose(new["n"], [[1.5, -1.5]])


def test_caliup_leaves_a_cluster_without_gradient_alone():
    v = {"n": np.array([[0.0, 0.0], [5.0, 5.0]], np.float32)}
    w = {"n": np.zeros(2, np.float32)}
    g = {"n": np.array([[1.0, 0.0], [0.0, 0.0]], np.float32)}
    new = cali_update(v, w, g, lr=1.0, phi=1.0)
    np.testing.assert_allclose(new["n"], [[-1.0, 0.0], [5.0, 5.0]])


def test_cluster_gradients_are_sample_weighted_per_cluster():
    grads = {"n": np.array([[1.0], [4.0], [10.0]], np.float32)}
    mean = cluster_gradients(grads, np.array([1, 3, 2]), np.array([0, 0, 2]), n_clusters=3)
    # cluster 0: (1·1 + 3·4)/4 = 3.25; cluster 1: no delegate; cluster 2: 10.
    np.testing.assert_allclose(mean["n"][:, 0], [3.25, 0.0, 10.0])


def test_pseudo_gradient_and_initial_cluster_models():
    np.testing.assert_allclose(pseudo_gradient({"n": np.array([-0.3, 0.6])}, lr=3.0)["n"], [0.1, -0.2])
    models = init_cluster_models({"n": np.array([1.0, 2.0], np.float32)}, 3)
    assert models["n"].shape == (3, 2) and (models["n"] == [1.0, 2.0]).all()


# --------------------------------------------------------------------------- FastAgg (eqs. 4, 5)
def test_fastagg_items_by_hand():
    # Delegate A (rows first, client-id order) changes item 0 by (1, 0) (L1 = 1) and touches
    # item 1 without changing it (weight 0). Delegate B changes item 0 by (0, 3) (L1 = 3) and
    # item 1 by (2, −2) (L1 = 4). Item 2 no delegate touched.
    item_ids = np.array([0, 1, 0, 1])
    deltas = np.array([[1, 0], [0, 0], [0, 3], [2, -2]], np.float32)
    update = fastagg_items(item_ids, deltas, n_items=3)
    np.testing.assert_allclose(update[0], [(1 * 1 + 3 * 0) / 4, (1 * 0 + 3 * 3) / 4])  # (0.25, 2.25)
    np.testing.assert_allclose(update[1], [2.0, -2.0])  # A's unchanged row does not dilute B's
    np.testing.assert_array_equal(update[2], [0.0, 0.0])  # untouched item stays as it is
    # Every item moves to a convex combination of the delegates' new rows.
    prev = np.array([[1.0, 1.0], [0.0, 0.0], [7.0, 7.0]], np.float32)
    new = prev + update
    np.testing.assert_allclose(new[0], (1 * (prev[0] + [1, 0]) + 3 * (prev[0] + [0, 3])) / 4)
    assert update.dtype == np.float32


def test_fastagg_item_deltas_reads_a_local_result():
    spec = NCFSpec("gmf", 2, (), n_items=3)
    merged = ClientUpdate(
        clients=np.array([4, 9]), n_samples=np.array([5, 50]), loss=np.zeros(2, np.float32),
        touched_rows=np.array([2, 2]), item_ids=np.array([0, 1, 0, 1]), row_owner=np.array([0, 0, 1, 1], np.int32),
        item_deltas={"item_gmf": np.array([[1, 0], [0, 0], [0, 3], [2, -2]], np.float32)},
        dense_deltas={"out.weight": np.zeros((2, 2), np.float32), "out.bias": np.zeros((2, 1), np.float32)},
    )
    out = fastagg_item_deltas(merged, spec.item_tables, spec.n_items)
    np.testing.assert_allclose(out["item_gmf"], [[0.25, 2.25], [2.0, -2.0], [0.0, 0.0]])


def test_subordinate_update_with_discount():
    # Cluster 0's delegates moved by (2, 0) and (0, 4): mean (1, 2). Cluster 1 had none.
    mean = cluster_mean_update(np.array([[2, 0], [0, 4]], np.float32), np.array([0, 0]), n_clusters=2)
    np.testing.assert_allclose(mean, [[1.0, 2.0], [0.0, 0.0]])
    users = np.array([[1.0, 1.0], [3.0, 3.0]], np.float32)
    new = subordinate_user_update(users, np.array([0, 1]), mean, discount=0.5)
    np.testing.assert_allclose(new, [[1.5, 2.0], [3.0, 3.0]])
    np.testing.assert_allclose(subordinate_user_update(users, np.array([0, 1]), mean, 0.0), users)


# --------------------------------------------------------------------------- ClusSamp
def test_encode_metadata_is_one_hot_per_column():
    features = CategoricalFeatures(
        codes={"age": np.array([0, 2], np.int32), "gender": np.array([1, 1], np.int32), "zip": np.array([0, 1], np.int32)},
        vocab={"age": ["a", "b", "c"], "gender": ["F", "M"], "zip": ["1", "2"]},
    )
    encoded = encode_metadata(features, ("age", "gender"))
    np.testing.assert_array_equal(encoded, [[1, 0, 0, 0, 1], [0, 0, 1, 0, 1]])
    with pytest.raises(ValueError, match="occupation"):
        encode_metadata(features)


def test_metadata_kmeans_finds_separated_groups_deterministically():
    rng = np.random.default_rng(1)
    centres = np.array([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0]])
    truth = np.repeat(np.arange(3), 20)
    points = centres[truth] + rng.normal(scale=0.3, size=(60, 2))
    labels = cluster_metadata(points, 3, seed=0)
    # Same partition as the truth (up to renaming), and the same labels for the same seed.
    assert all(len(np.unique(labels[truth == k])) == 1 for k in range(3))
    assert len(np.unique(labels)) == 3
    np.testing.assert_array_equal(labels, cluster_metadata(points, 3, seed=0))


def test_clussamp_takes_m_over_p_per_cluster_round_robin():
    labels = np.array([0] * 6 + [1] * 4)
    sampler = ClusterSampler(labels, 2, np.ones(10, bool), np.random.default_rng(7))
    rounds = [sampler.draw(4) for _ in range(6)]
    for r in rounds:
        assert np.bincount(r.delegate_cluster, minlength=2).tolist() == [2, 2]
        assert (labels[r.delegates] == r.delegate_cluster).all()
        # Subordinates are every other member, with their clusters.
        assert sorted(np.r_[r.delegates, r.subordinates].tolist()) == list(range(10))
        assert (labels[r.subordinates] == r.subordinate_cluster).all()
    # Cluster 0 (6 members, 2 a round): every member once in rounds 0–2, and again in 3–5.
    for start in (0, 3):
        picked = np.concatenate([r.delegates[r.delegate_cluster == 0] for r in rounds[start:start + 3]])
        assert sorted(picked.tolist()) == list(range(6))
    # Cluster 1 (4 members): once each in rounds 0–1, 2–3, 4–5.
    for start in (0, 2, 4):
        picked = np.concatenate([r.delegates[r.delegate_cluster == 1] for r in rounds[start:start + 2]])
        assert sorted(picked.tolist()) == list(range(6, 10))


def test_clussamp_is_deterministic_for_a_seed_and_resumes():
    labels = np.arange(40) % 4
    def draws(seed):
        sampler = ClusterSampler(labels, 4, np.ones(40, bool), np.random.default_rng(seed))
        return np.concatenate([sampler.draw(8).delegates for _ in range(4)])

    np.testing.assert_array_equal(draws(3), draws(3))
    assert not np.array_equal(draws(3), draws(4))
    a = ClusterSampler(labels, 4, np.ones(40, bool), np.random.default_rng(5))
    a.draw(8)
    b = ClusterSampler(labels, 4, np.ones(40, bool), np.random.default_rng(99))
    b.load_state_dict(a.state_dict())
    for _ in range(6):
        np.testing.assert_array_equal(a.draw(8).delegates, b.draw(8).delegates)
    a.relabel(labels[::-1].copy())
    b.relabel(labels[::-1].copy())
    np.testing.assert_array_equal(a.draw(8).delegates, b.draw(8).delegates)


def test_clussamp_quotas_and_ineligible_clients():
    labels = np.array([0, 0, 0, 0, 1, 1, 2])
    eligible = np.array([True, True, True, True, True, False, False])
    sampler = ClusterSampler(labels, 3, eligible, np.random.default_rng(0))
    # m = 4 over P = 3: 1 each, the remainder to the largest cluster; capped by eligible members,
    # and what cluster 2 (no eligible member) cannot take goes to the cluster with the most room.
    assert sampler.quotas(4).tolist() == [3, 1, 0]
    assert sampler.quotas(3).tolist() == [2, 1, 0]
    assert sampler.quotas(9).tolist() == [4, 1, 0]  # no more eligible clients than that
    r = sampler.draw(4)
    assert np.bincount(r.delegate_cluster, minlength=3).tolist() == [3, 1, 0]
    assert 5 not in r.delegates and 6 not in r.delegates
    assert {5, 6} <= set(r.subordinates.tolist())
    with pytest.raises(ValueError):
        ClusterSampler(np.array([0, 3]), 3, np.ones(2, bool), np.random.default_rng(0))


# --------------------------------------------------------------------------- re-clustering, ClusAvg
def test_clusavg_weights_by_instance_counts():
    # Old clusters: {0, 1, 2} → 0, {3, 4} → 1. New: {0} → 0, {1, 2, 3, 4} → 1; new cluster 2 empty.
    models = {"n": np.array([[10.0], [20.0], [99.0]], np.float32)}
    old = np.array([0, 0, 0, 1, 1])
    new = np.array([0, 1, 1, 1, 1])
    out = clus_avg(models, old, new)
    # q0 = 10; q1 = (2·10 + 2·20)/4 = 15; q2 has no members and keeps its model.
    np.testing.assert_allclose(out["n"][:, 0], [10.0, 15.0, 99.0])
    assert out["n"].dtype == np.float32
    # With sample counts as instance weights: q1 = (1·10 + 1·10 + 6·20)/8 = 17.5.
    weighted = clus_avg(models, old, new, weights=np.array([1, 1, 1, 6, 0]))
    np.testing.assert_allclose(weighted["n"][1, 0], 17.5)
    # Same partition → models unchanged.
    np.testing.assert_allclose(clus_avg(models, old, old)["n"], models["n"])


def test_federated_recluster_matches_sklearn_kmeans():
    rng = np.random.default_rng(2)
    users = np.concatenate([rng.normal(c, 1.0, size=(30, 3)) for c in (-3.0, 0.0, 3.0)]).astype(np.float32)
    start = users[[0, 1, 2]].astype(np.float64)  # a poor start, so several steps matter
    labels, centroids = recluster(users, start, iterations=5)
    reference = KMeans(3, init=start, n_init=1, max_iter=5, tol=0.0).fit(users.astype(np.float64))
    np.testing.assert_array_equal(labels, reference.labels_)
    np.testing.assert_allclose(centroids, reference.cluster_centers_, rtol=1e-6, atol=1e-9)


def test_recluster_starts_from_metadata_clusters_and_keeps_empty_ones():
    users = np.array([[0.0], [1.0], [10.0], [11.0]], np.float32)
    centroids = initial_centroids(users, np.array([0, 0, 1, 1]), n_clusters=3)
    np.testing.assert_allclose(centroids, [[0.5], [10.5], [5.5]])  # empty cluster 2: overall mean
    labels, moved = recluster(users, np.array([[0.5], [10.5], [100.0]]), iterations=2)
    assert labels.tolist() == [0, 0, 1, 1]
    assert moved[2, 0] == 100.0  # no members: centroid kept
    assert assign_clusters(np.array([[6.0]]), moved).tolist() == [1]
