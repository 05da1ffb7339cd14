import numpy as np
import pyarrow as pa
import pytest

from thresher.data.dataset import Dataset
from thresher.errors import UsageError
from thresher.sampling.pps import PPSSampler, inclusion_from_shares, selection_shares, systematic_pps

REPS = 3000


def assert_inclusion(counts, pi, reps, z=4.5):
    counts, pi = np.asarray(counts, dtype=float), np.asarray(pi, dtype=float)
    tol = z * np.sqrt(pi * (1 - pi) / reps) + 0.5 / reps
    dev = np.abs(counts / reps - pi)
    bad = dev > tol
    assert not bad.any(), f"rows {np.flatnonzero(bad)[:5]}: freq {counts[bad][:5] / reps} vs pi {pi[bad][:5]}"


def skewed_pool(big_n: int = 30, seed: int = 0) -> Dataset:
    rng = np.random.default_rng(seed)
    size = rng.exponential(1.0, big_n)
    size[:3] = [40.0, 25.0, 12.0]  # certainty units at n = 8
    size[3] = 0.0  # never drawn without a floor
    return Dataset.from_table(pa.table({"size": size}))


def test_fixed_size_pps_frequencies_match_pi_with_certainty_units():
    ds = skewed_pool()
    sampler = PPSSampler(size_by="size")
    pi = sampler.inclusion_probabilities(ds, 8)
    assert np.isclose(pi.sum(), 8) and pi.max() <= 1 and np.sum(pi == 1) >= 2 and pi[3] == 0
    counts = np.zeros(len(pi))
    for seed in range(REPS):
        sel = PPSSampler(size_by="size", random_state=seed).select(ds, 8)
        assert len(sel) == 8 and len(np.unique(sel.indices)) == 8 and np.all(np.diff(sel.indices) > 0)
        counts[sel.indices] += 1
    assert_inclusion(counts, pi, REPS)
    assert np.allclose(sel.pi, pi[sel.indices]) and np.allclose(sel.weights, 1 / sel.pi)
    d = sel.diagnostics
    assert d["certainty_units"] == int(np.sum(pi == 1)) and np.isclose(d["sum_pi"], 8)
    assert d["zero_probability_rows"] == 1 and d["design"] == "randomized systematic"


def test_poisson_pps_frequencies_and_expected_size():
    ds = skewed_pool(seed=1)
    pi = PPSSampler(size_by="size", floor=0.2, poisson=True).inclusion_probabilities(ds, 8)
    counts, sizes = np.zeros(len(pi)), []
    for seed in range(REPS):
        sel = PPSSampler(size_by="size", floor=0.2, poisson=True, random_state=seed).select(ds, 8)
        counts[sel.indices] += 1
        sizes.append(len(sel))
    assert_inclusion(counts, pi, REPS)
    sd = np.sqrt((pi * (1 - pi)).sum() / REPS)
    assert abs(np.mean(sizes) - 8) < 4.5 * sd and np.var(sizes) > 0
    assert sel.diagnostics["design"] == "poisson" and np.isclose(sel.diagnostics["expected_n"], 8)


def test_systematic_pps_exact_for_random_probability_vectors():
    rng = np.random.default_rng(4)
    pi = inclusion_from_shares(selection_shares(rng.pareto(1.5, 15) + 0.01), 5)
    counts = np.zeros(15)
    for _ in range(REPS):
        counts[systematic_pps(pi, 5, rng)] += 1
    assert_inclusion(counts, pi, REPS)


def test_shares_temperature_floor_and_cap():
    size = np.array([1.0, 2.0, 4.0, 8.0, 0.0])
    p = selection_shares(size)
    assert np.allclose(p, size / size.sum())
    p2 = selection_shares(size, temperature=0.5)  # sharper: size^2
    assert np.allclose(p2, size ** 2 / (size ** 2).sum())
    hot = selection_shares(size[:4], temperature=1e6)  # flattens toward uniform
    assert np.allclose(hot, 0.25, atol=1e-5)
    big_n = len(size)
    floored = selection_shares(size, floor=0.5)
    assert np.isclose(floored.sum(), 1) and floored.min() >= 0.5 / big_n - 1e-12
    capped = selection_shares(size, cap=1.5)
    assert np.isclose(capped.sum(), 1) and capped.max() <= 1.5 / big_n + 1e-12
    # Rows off the bounds keep their relative shares.
    free = (capped > 1e-12) & (capped < 1.5 / big_n - 1e-12)
    assert np.allclose(capped[free] / size[free], (capped[free] / size[free])[0])
    both = selection_shares(size, floor=1.0, cap=1.0)  # both bounds at 1/N: uniform
    assert np.allclose(both, 1 / big_n)


def test_inclusion_from_shares_caps_iteratively():
    p = np.array([0.5, 0.3, 0.1, 0.05, 0.05])
    pi = inclusion_from_shares(p, 3)
    # 0.5*3 > 1 -> 1; then 2 rows over the rest (0.5 share): 0.3*4 = 1.2 > 1 -> 1; 1 row over 0.2.
    assert np.allclose(pi, [1, 1, 0.5, 0.25, 0.25])


def test_same_seed_same_selection_different_seed_differs():
    ds = skewed_pool(200, seed=2)
    a = PPSSampler(size_by="size", random_state=0).select(ds, 20)
    assert np.array_equal(a.indices, PPSSampler(size_by="size", random_state=0).select(ds, 20).indices)
    assert not np.array_equal(a.indices, PPSSampler(size_by="size", random_state=1).select(ds, 20).indices)


@pytest.mark.parametrize("kwargs, match", [
    ({"size_by": None}, "size_by"),
    ({"size_by": "size", "temperature": 0}, "temperature"),
    ({"size_by": "size", "floor": 1.5}, "floor"),
    ({"size_by": "size", "cap": 0.5}, "cap"),
    ({"size_by": "size", "poisson": "no"}, "poisson"),
])
def test_constructor_validation(kwargs, match):
    with pytest.raises(UsageError, match=match):
        PPSSampler(**kwargs)


def test_data_errors():
    neg = Dataset.from_table(pa.table({"size": [1.0, -2.0, 3.0]}))
    with pytest.raises(UsageError, match="must be >= 0; row 2 has -2"):
        PPSSampler(size_by="size").select(neg, 1)
    missing = Dataset.from_table(pa.table({"size": [1.0, None, 3.0]}))
    with pytest.raises(UsageError, match="missing or non-finite values \\(first at row 2\\)"):
        PPSSampler(size_by="size").select(missing, 1)
    zeros = Dataset.from_table(pa.table({"size": [0.0, 0.0, 5.0]}))
    with pytest.raises(UsageError, match="only 1 rows have a positive size share; cannot draw 2"):
        PPSSampler(size_by="size").select(zeros, 2)
    assert len(PPSSampler(size_by="size", floor=0.1, random_state=0).select(zeros, 2)) == 2
    with pytest.raises(UsageError, match="cannot draw 5 rows without replacement from a pool of 3"):
        PPSSampler(size_by="size").select(zeros, 5)
    with pytest.raises(UsageError, match="must be numeric"):
        PPSSampler(size_by="s").select(Dataset.from_table(pa.table({"s": ["x", "y"]})), 1)
