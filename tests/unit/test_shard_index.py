import numpy as np

from cluster.retrieval.shard_index import ShardIndex, merge_top_k


def _world(seed=0, n_items=300, dim=8, n_groups=5):
    rng = np.random.default_rng(seed)
    vectors = rng.normal(size=(n_items, dim)).astype(np.float32)
    groups = rng.integers(0, n_groups, n_items)
    queries = rng.normal(size=(20, dim)).astype(np.float32)
    mu = -np.abs(rng.normal(size=n_groups)).astype(np.float32)
    return vectors, groups, queries, mu


def _brute_force(vectors, groups, queries, mu, k):
    adjusted = queries @ vectors.T - mu[groups]
    return np.argsort(-adjusted, axis=1, kind="stable")[:, :k], adjusted


def _shards(vectors, groups, n_shards, kind="flat", **kw):
    parts = np.array_split(np.random.default_rng(1).permutation(len(vectors)), n_shards)
    return [ShardIndex(ids, vectors[ids], groups[ids], int(groups.max()) + 1, kind=kind, **kw) for ids in parts]


def test_sharded_flat_search_equals_brute_force_adjusted_top_k():
    vectors, groups, queries, mu = _world()
    shards = _shards(vectors, groups, 3)
    for shard in shards:
        shard.set_mu(mu)
    merged = merge_top_k([s.search(queries, 10) for s in shards], 10)
    expected, adjusted = _brute_force(vectors, groups, queries, mu, 10)
    assert np.array_equal(np.sort(merged.items, axis=1), np.sort(expected, axis=1))
    np.testing.assert_allclose(merged.adjusted, np.take_along_axis(adjusted, merged.items, axis=1), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(merged.scores, np.einsum("nd,nkd->nk", queries, vectors[merged.items]), rtol=1e-5, atol=1e-5)
    assert (np.diff(merged.adjusted, axis=1) <= 1e-6).all()


def test_changing_mu_rewrites_only_the_adjusted_coordinate():
    vectors, groups, queries, mu = _world(seed=2)
    (shard,) = _shards(vectors, groups, 1)
    before = shard.search(queries, 5)
    boost = np.zeros_like(mu)
    boost[3] = -100.0  # group 3 jumps to the top
    shard.set_mu(boost)
    after = shard.search(queries, 5)
    assert (groups[after.items] == 3).all()
    np.testing.assert_allclose(after.adjusted, after.scores + 100.0, rtol=1e-5)
    assert not np.array_equal(before.items, after.items)


def test_ivf_is_exact_when_overfetch_covers_the_partition():
    vectors, groups, queries, mu = _world(seed=3, n_items=120)
    shards = _shards(vectors, groups, 2, kind="ivf", nlist=4, nprobe=4, overfetch=100)
    for shard in shards:
        shard.set_mu(mu)
    merged = merge_top_k([s.search(queries, 10) for s in shards], 10)
    expected, _ = _brute_force(vectors, groups, queries, mu, 10)
    assert np.array_equal(np.sort(merged.items, axis=1), np.sort(expected, axis=1))


def test_small_partition_pads_with_missing_items():
    vectors, groups, queries, _ = _world(seed=4, n_items=3)
    (shard,) = _shards(vectors, groups, 1)
    hits = shard.search(queries[:2], 5)
    assert hits.items.shape == (2, 3) and (hits.items >= 0).all()


def test_excluded_items_are_skipped_and_the_rest_is_the_exact_top_k():
    vectors, groups, queries, mu = _world(seed=5)
    shards = _shards(vectors, groups, 3)
    for shard in shards:
        shard.set_mu(mu)
    expected, adjusted = _brute_force(vectors, groups, queries, mu, 300)
    exclude = [row[:12] for row in expected]  # each query's 12 best items are already seen
    merged = merge_top_k([s.search(queries, 6, exclude) for s in shards], 6)
    for q in range(len(queries)):
        allowed = [i for i in expected[q] if i not in set(exclude[q])]
        assert merged.items[q].tolist() == allowed[:6]
        assert np.allclose(merged.adjusted[q], adjusted[q, allowed[:6]], atol=1e-5)
