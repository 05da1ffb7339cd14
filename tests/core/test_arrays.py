"""The sort-based group codes agree with np.unique on every kind of input."""
import numpy as np
import pytest

from thresher.core.arrays import count_distinct, dense_codes, sorted_unique


@pytest.mark.parametrize("values", [
    np.array([], np.int64),
    np.array([5]),
    np.random.default_rng(0).integers(0, 50, size=10_000),
    np.random.default_rng(1).integers(0, 2**64, size=5_000, dtype=np.uint64),
    np.array([3, 3, 1, 1, 2, 3, 1], np.int64),
    np.array([0.5, -1.0, 0.5, 2.0]),
])
def test_dense_codes_and_count_match_np_unique(values):
    assert np.array_equal(dense_codes(values), np.unique(values, return_inverse=True)[1].ravel())
    assert dense_codes(values).dtype == np.int64
    assert count_distinct(values) == len(np.unique(values))
    assert np.array_equal(sorted_unique(values), np.unique(values))
