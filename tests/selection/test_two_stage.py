"""Two-stage k-center (`partitions`): the 4-approximation bound against the
exact optimum, the real covering radius in the diagnostics, budgets, and one
partition being the one-machine greedy."""
from itertools import combinations

import numpy as np
import pyarrow as pa
import pytest

from thresher.core.budget import Budget
from thresher.data.dataset import Dataset
from thresher.errors import UsageError
from thresher.selection.kcenter import KCenterSelector
from thresher.selection.two_stage import partition_bounds


def pool(n: int) -> Dataset:
    return Dataset.from_table(pa.table({"tokens": np.arange(n) % 7 + 1}))


def blobs(n: int, centers: int, dim: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    mu = rng.standard_normal((centers, dim)) * 3
    return (mu[rng.integers(0, centers, n)] + rng.standard_normal((n, dim)) * 0.3).astype(np.float32)


def radius(X, rows, metric="euclidean"):
    d = np.sqrt(((X[:, None, :].astype(np.float64) - X[None, rows, :]) ** 2).sum(-1)).min(axis=1)
    return d.max()


@pytest.mark.parametrize("seed", range(6))
def test_radius_at_most_four_times_optimal(seed):
    rng = np.random.default_rng(seed)
    X = (rng.standard_normal((3, 2))[rng.integers(0, 3, 14)] * 4 + rng.standard_normal((14, 2))).astype(np.float32)
    optimal = min(radius(X, list(s)) for s in combinations(range(14), 3))
    for partitions in (2, 3, 5):
        sel = KCenterSelector(metric="euclidean", partitions=partitions, random_state=seed).select(
            pool(14), 3, {"embedding": X})
        got = radius(X, sel.indices)
        assert got <= 4 * optimal + 1e-5
        assert sel.diagnostics["covering_radius"] == pytest.approx(got, rel=1e-4)  # over every row, not the candidates


def test_on_clustered_data_two_stage_covers_like_the_greedy():
    X = blobs(6000, 60, 16, seed=1)
    exact = KCenterSelector(metric="euclidean", random_state=0).select(pool(6000), 60, {"embedding": X})
    split = KCenterSelector(metric="euclidean", partitions=8, random_state=0).select(pool(6000), 60, {"embedding": X})
    assert len(split) == 60 and len(set(split.indices.tolist())) == 60
    ratio = split.diagnostics["covering_radius"] / exact.diagnostics["covering_radius"]
    assert ratio < 1.5, ratio
    assert split.diagnostics["two_stage"]["candidates"] == 8 * 60


def test_one_partition_is_the_one_machine_greedy():
    X = blobs(500, 10, 8, seed=2)
    a = KCenterSelector(random_state=4).select(pool(500), 25, {"embedding": X})
    b = KCenterSelector(random_state=4, partitions=1).select(pool(500), 25, {"embedding": X})
    assert np.array_equal(a.indices, b.indices)


def test_same_seed_same_picks_and_token_budget_holds():
    X = blobs(900, 12, 8, seed=3)
    ds = pool(900)
    runs = [KCenterSelector(partitions=4, random_state=9).select(ds, Budget.parse(tokens=200), {"embedding": X})
            for _ in range(2)]
    assert np.array_equal(runs[0].indices, runs[1].indices)
    assert runs[0].diagnostics["tokens_used"] <= 200 and len(runs[0]) > 20


def test_initial_rows_are_not_picked_again():
    X = blobs(800, 10, 8, seed=5)
    sel = KCenterSelector(partitions=4, initial=[3, 400, 799], random_state=0).select(pool(800), 30, {"embedding": X})
    assert len(sel) == 30 and not {3, 400, 799} & set(sel.indices.tolist())


def test_partition_bounds_and_bad_values():
    assert partition_bounds(10, 3).tolist() == [0, 3, 7, 10]
    assert partition_bounds(2, 8).tolist() == [0, 1, 2]
    with pytest.raises(UsageError, match="partitions"):
        KCenterSelector(partitions=0)


# -- facility location (GreeDi) ---------------------------------------------------------
from thresher.selection.facility import FacilityLocationSelector  # noqa: E402


def exact_objective(X, rows):
    U = X / np.linalg.norm(X, axis=1, keepdims=True)
    return float(((U @ U[rows].T).max(axis=1) ** 2).sum())


def test_greedi_objective_is_close_to_the_one_machine_greedy_and_reported_exactly():
    X = blobs(4000, 40, 16, seed=7)
    one = FacilityLocationSelector(graph="knn", knn="exact", random_state=0).select(pool(4000), 40, {"embedding": X})
    split = FacilityLocationSelector(graph="knn", knn="exact", partitions=6, random_state=0).select(
        pool(4000), 40, {"embedding": X})
    assert len(split) == 40 and len(set(split.indices.tolist())) == 40
    got = exact_objective(X, split.indices)
    assert split.diagnostics["pool_objective"] == pytest.approx(got, rel=1e-4)
    assert got >= 0.97 * exact_objective(X, one.indices)
    assert split.diagnostics["two_stage"]["candidates"] == 6 * 40


def test_greedi_repeats_and_respects_a_token_budget():
    X = blobs(700, 10, 8, seed=8)
    runs = [FacilityLocationSelector(partitions=3, random_state=1).select(pool(700), Budget.parse(tokens=150),
                                                                         {"embedding": X}) for _ in range(2)]
    assert np.array_equal(runs[0].indices, runs[1].indices)
    assert runs[0].diagnostics["tokens_used"] <= 150 and len(runs[0]) > 15
    with pytest.raises(UsageError, match="partitions"):
        FacilityLocationSelector(partitions=-1)
