import json

import numpy as np
import pyarrow as pa
import pytest

from thresher.core.budget import Budget
from thresher.data.dataset import Dataset
from thresher.errors import UsageError
from thresher.sampling.designs import DESIGNS
from thresher.sampling.random import RandomSampler

REPS = 3000


def pool(n: int) -> Dataset:
    return Dataset.from_table(pa.table({"x": np.arange(n, dtype=np.float64)}))


def assert_inclusion(counts, pi, reps, z=4.5):
    """Every row's empirical inclusion frequency is within z binomial SEs of pi."""
    counts, pi = np.asarray(counts, dtype=float), np.asarray(pi, dtype=float)
    tol = z * np.sqrt(pi * (1 - pi) / reps) + 0.5 / reps
    dev = np.abs(counts / reps - pi)
    bad = dev > tol
    assert not bad.any(), f"rows {np.flatnonzero(bad)[:5]}: freq {counts[bad][:5] / reps} vs pi {pi[bad][:5]}"


def test_srs_inclusion_frequency_of_every_row_is_n_over_big_n():
    ds = pool(40)
    counts = np.zeros(40)
    for seed in range(REPS):
        sel = RandomSampler(random_state=seed).select(ds, 7)
        assert len(sel) == 7 and len(np.unique(sel.indices)) == 7
        assert np.all(np.diff(sel.indices) > 0)  # pool order
        counts[sel.indices] += 1
    assert_inclusion(counts, np.full(40, 7 / 40), REPS)
    assert np.allclose(sel.pi, 7 / 40) and np.allclose(sel.weights, 40 / 7)


def test_with_replacement_frequencies_multiplicities_and_weights():
    big_n, n = 30, 10
    ds = pool(big_n)
    appear = np.zeros(big_n)
    draws = np.zeros(big_n)
    totals = []
    y = np.arange(big_n, dtype=float) ** 1.5
    for seed in range(REPS):
        sel = RandomSampler(replace=True, random_state=seed).select(ds, n)
        assert len(sel) == n and np.all(np.diff(sel.indices) >= 0)
        appear[np.unique(sel.indices)] += 1
        np.add.at(draws, sel.indices, 1)
        totals.append((sel.weights * y[sel.indices]).sum())
    pi = 1 - (1 - 1 / big_n) ** n
    assert np.allclose(sel.pi, pi) and np.allclose(sel.weights, big_n / n)
    assert_inclusion(appear, np.full(big_n, pi), REPS)
    # Draws per row: Binomial(n, 1/N) each replication.
    mean_draws = draws / REPS
    assert np.all(np.abs(mean_draws - n / big_n) <= 4.5 * np.sqrt(n / big_n * (1 - 1 / big_n) / REPS))
    # Hansen-Hurwitz total with weights N/n is unbiased.
    totals = np.array(totals)
    assert abs(totals.mean() - y.sum()) <= 4 * totals.std() / np.sqrt(REPS)


def test_with_replacement_keeps_repeats():
    sel = RandomSampler(replace=True, random_state=3).select(pool(5), 50)
    assert len(sel) == 50 and len(np.unique(sel.indices)) <= 5
    assert sel.diagnostics["distinct_rows"] == len(np.unique(sel.indices))


def test_inclusion_probabilities_match_selection():
    ds = pool(25)
    assert np.allclose(RandomSampler().inclusion_probabilities(ds, 5), 0.2)
    wr = RandomSampler(replace=True).inclusion_probabilities(ds, 5)
    assert np.allclose(wr, 1 - (24 / 25) ** 5)


def test_same_seed_same_selection_different_seed_differs():
    ds = pool(1000)
    a = RandomSampler(random_state=11).select(ds, 100)
    b = RandomSampler(random_state=11).select(ds, 100)
    c = RandomSampler(random_state=12).select(ds, 100)
    assert np.array_equal(a.indices, b.indices) and a.seed == 11
    assert not np.array_equal(a.indices, c.indices)
    assert json.dumps(a.manifest()) == json.dumps(b.manifest())


def test_budget_forms_and_metadata():
    ds = pool(200)
    sel = RandomSampler(random_state=0).select(ds, Budget.parse(fraction=0.25))
    assert len(sel) == 50 and sel.method == "random" and sel.params == {"replace": False}
    assert sel.pool_size == 200 and sel.strata is None
    assert len(RandomSampler(random_state=0).select(ds, Budget.parse(n=10))) == 10
    assert len(RandomSampler(random_state=0).select(ds, 0)) == 0
    assert len(RandomSampler(random_state=0).select(ds, 200)) == 200
    assert DESIGNS["random"] is RandomSampler


def test_errors_are_actionable():
    with pytest.raises(UsageError, match="cannot draw 500 rows without replacement from a pool of 300"):
        RandomSampler().select(pool(300), 500)
    with pytest.raises(UsageError, match="empty pool"):
        RandomSampler(replace=True).select(pool(0), 3)
    with pytest.raises(UsageError, match="random_state"):
        RandomSampler(random_state=-1)
    with pytest.raises(UsageError, match="random_state"):
        RandomSampler(random_state="seven")
    with pytest.raises(UsageError, match="replace"):
        RandomSampler(replace="yes")
    with pytest.raises(UsageError, match="budget"):
        RandomSampler().select(pool(10), -2)
    with pytest.raises(UsageError, match="budget"):
        RandomSampler().select(pool(10), 2.5)
    with pytest.raises(UsageError, match="token"):
        RandomSampler().select(pool(10), Budget.parse(tokens=100))


def test_generator_random_state_is_accepted():
    rng = np.random.default_rng(0)
    sel = RandomSampler(random_state=rng).select(pool(50), 5)
    assert len(sel) == 5 and sel.seed is None
    assert "random_state" not in sel.params


@pytest.mark.parametrize("name, params", [
    ("random", {}), ("random", {"replace": True}), ("stratified", {"by": "g"}),
    ("cluster", {"cluster_by": "g"}), ("cluster", {"cluster_by": "g", "stages": 2, "rows_per_cluster": 2}),
    ("systematic", {"variable_intervals": True}), ("systematic", {}), ("pps", {"size_by": "x"}),
    ("pps", {"size_by": "x", "poisson": True}),
])
def test_every_design_handles_a_zero_budget_and_an_empty_pool(name, params):
    table = pa.table({"g": ["a", "b", "a", "c"], "x": [1.0, 2.0, 3.0, 4.0]})
    for ds in (Dataset.from_table(table), Dataset.from_table(table.slice(0, 0))):
        sel = DESIGNS[name](random_state=0, **params).select(ds, 0)
        assert len(sel) == 0 and sel.pool_size == len(ds)
        json.dumps(sel.manifest())
