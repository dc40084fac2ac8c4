"""The partitions searched in process (``search_in: replica``) answer what per-partition shard
indexes, merged, answer: flat through one joined index, approximate kinds partition by partition."""

from __future__ import annotations

import numpy as np
import pytest

from cluster.retrieval.local_shards import LocalShards
from cluster.retrieval.partitions import partition_items
from cluster.retrieval.shard_index import IndexSettings, ShardIndex, merge_top_k

N_ITEMS, DIM, N_GROUPS, K = 3000, 16, 4, 10


@pytest.mark.parametrize(
    "settings",
    [IndexSettings(kind="flat"), IndexSettings(kind="ivf", nlist=8, nprobe=3), IndexSettings(kind="hnsw")],
    ids=["flat", "ivf", "hnsw"],
)
def test_in_process_answers_are_the_merged_shard_answers(settings):
    rng = np.random.default_rng(3)
    vectors = rng.normal(size=(N_ITEMS, DIM)).astype(np.float32)
    parts = partition_items(np.arange(N_ITEMS) + 100, vectors, rng.integers(0, N_GROUPS, N_ITEMS), 3, rng)
    local = LocalShards.build(parts, N_GROUPS, settings)
    shards = [ShardIndex(p.item_ids, p.vectors, p.groups, N_GROUPS, settings) for p in parts]
    assert len(local) == 3
    for version, mu in enumerate([np.zeros(N_GROUPS), np.array([0.0, -0.4, 0.3, 0.1])]):
        for shard in shards:
            shard.set_mu(mu)
        queries = rng.normal(size=(5, DIM)).astype(np.float32)
        exclude = [rng.choice(N_ITEMS, 30, replace=False) + 100 for _ in range(5)]
        for excluded in (None, exclude):
            answers = local.search(queries, K, mu, version, excluded)
            assert {v for _, v in answers} == {version}
            got = merge_top_k([hits for hits, _ in answers], K)
            expected = merge_top_k([s.search(queries, K, excluded) for s in shards], K)
            np.testing.assert_array_equal(got.items, expected.items)
            np.testing.assert_allclose(got.adjusted, expected.adjusted, rtol=1e-6)


def test_an_older_mu_is_not_applied_over_a_newer_one():
    rng = np.random.default_rng(0)
    parts = partition_items(np.arange(200), rng.normal(size=(200, 4)).astype(np.float32),
                            rng.integers(0, 2, 200), 2, rng)
    local = LocalShards.build(parts, 2, IndexSettings())
    local.set_mu(np.array([0.5, 0.0]), 3)
    local.set_mu(np.array([0.0, 0.0]), 2)
    assert local.mu_version == 3 and local.indexes[0].mu[0] == np.float32(0.5)
