import numpy as np
import pytest

from cluster.arrays import sorted_union, sorted_unique


@pytest.mark.parametrize("values", [[], [7], [3, 1, 3, 2, 1], [5, 5, 5], list(range(10, 0, -1))])
def test_sorted_unique_matches_numpy(values):
    array = np.asarray(values, dtype=np.int64)
    result = sorted_unique(array)
    assert result.dtype == np.unique(array).dtype
    assert np.array_equal(result, np.unique(array))


def test_sorted_unique_on_many_random_keys_and_union():
    rng = np.random.default_rng(0)
    keys = rng.integers(0, 5_000, size=20_000).astype(np.int32)
    assert np.array_equal(sorted_unique(keys), np.unique(keys))
    other = rng.integers(0, 9_000, size=300)
    assert np.array_equal(sorted_union(keys, other), np.union1d(keys, other))
