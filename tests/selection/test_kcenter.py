"""Greedy k-center: exactness against the plain loop, the 2-approximation,
budgets, seeding and the selector step."""
from itertools import combinations

import numpy as np
import pyarrow as pa
import pytest

from thresher.core.budget import Budget
from thresher.data.dataset import Dataset
from thresher.errors import UsageError
from thresher.selection.kcenter import KCenterSelector, kcenter_greedy


def _plain(X: np.ndarray, first: int, k: int, initial=()) -> tuple[list[int], list[float]]:
    """The obvious float64 farthest-point loop (squared Euclidean distances)."""
    X = X.astype(np.float64)
    mind = np.full(len(X), np.inf)
    for c in initial:
        mind = np.minimum(mind, ((X - X[c]) ** 2).sum(1))
    order, radii, j = [], [], first
    for _ in range(k):
        order.append(j)
        mind = np.minimum(mind, ((X - X[j]) ** 2).sum(1))
        radii.append(float(np.sqrt(mind.max())))
        j = int(np.argmax(mind))
    return order, radii


def _unit(X: np.ndarray) -> np.ndarray:
    return (X / np.linalg.norm(X, axis=1, keepdims=True)).astype(np.float32)


@pytest.mark.parametrize("block_size", [1, 3, 64])
def test_matches_plain_loop_euclidean(block_size):
    X = np.random.default_rng(1).standard_normal((600, 12)).astype(np.float32) * 3 + 1
    order, radii = kcenter_greedy(X, 80, metric="euclidean", block_size=block_size, random_state=5)
    ref, ref_radii = _plain(X, int(order[0]), 80)
    assert order.tolist() == ref
    np.testing.assert_allclose(radii, ref_radii, rtol=1e-4)
    assert np.all(np.diff(radii) <= 1e-6)  # the covering radius never grows


def test_cosine_picks_equal_euclidean_on_unit_rows_and_radius_is_one_minus_cos():
    X = _unit(np.random.default_rng(2).standard_normal((400, 8)))
    o_cos, r_cos = kcenter_greedy(X, 30, metric="cosine", random_state=3)
    o_euc, r_euc = kcenter_greedy(X, 30, metric="euclidean", random_state=3)
    assert o_cos.tolist() == o_euc.tolist()
    np.testing.assert_allclose(r_cos, r_euc ** 2 / 2, rtol=1e-4, atol=1e-6)
    dist = 1 - X @ X[o_cos].T  # cosine distance to every pick
    assert dist.min(axis=1).max() == pytest.approx(r_cos[-1], abs=1e-5)


def test_cosine_normalises_rows():
    X = np.random.default_rng(4).standard_normal((200, 6)).astype(np.float32)
    scaled = X * np.random.default_rng(5).uniform(0.1, 10, size=(200, 1)).astype(np.float32)
    assert kcenter_greedy(X, 20, random_state=0)[0].tolist() == kcenter_greedy(scaled, 20, random_state=0)[0].tolist()


@pytest.mark.parametrize("seed", range(8))
def test_radius_at_most_twice_optimal(seed):
    rng = np.random.default_rng(seed)
    centers = rng.standard_normal((3, 2)) * 4
    X = (centers[rng.integers(0, 3, 12)] + rng.standard_normal((12, 2))).astype(np.float32)
    D = np.sqrt(((X[:, None, :].astype(np.float64) - X[None, :, :]) ** 2).sum(-1))
    optimal = min(D[:, list(s)].min(axis=1).max() for s in combinations(range(12), 3))
    for start in range(5):
        _, radii = kcenter_greedy(X, 3, metric="euclidean", random_state=start)
        assert radii[-1] <= 2 * optimal + 1e-5


def test_first_pick_is_uniform_over_rows():
    X = np.random.default_rng(0).standard_normal((10, 3)).astype(np.float32)
    draws = 1500
    firsts = np.array([kcenter_greedy(X, 1, random_state=s)[0][0] for s in range(draws)])
    counts = np.bincount(firsts, minlength=10)
    se = np.sqrt(draws * 0.1 * 0.9)
    assert np.all(np.abs(counts - draws / 10) < 4.5 * se)


def test_deterministic_per_seed():
    X = np.random.default_rng(7).standard_normal((300, 5)).astype(np.float32)
    a = kcenter_greedy(X, 25, random_state=11)
    b = kcenter_greedy(X, 25, random_state=11)
    assert a[0].tolist() == b[0].tolist() and np.array_equal(a[1], b[1])
    firsts = {int(kcenter_greedy(X, 1, random_state=s)[0][0]) for s in range(20)}
    assert len(firsts) > 5


def test_initial_rows_are_covered_first_and_not_returned():
    X = np.random.default_rng(8).standard_normal((250, 4)).astype(np.float32)
    initial = [3, 40, 41, 199]
    order, radii = kcenter_greedy(X, 15, metric="euclidean", initial=initial)
    assert not set(order.tolist()) & set(initial)
    d0 = np.sqrt(((X[:, None].astype(np.float64) - X[initial][None]) ** 2).sum(-1)).min(axis=1)
    assert order[0] == int(np.argmax(d0))  # farthest from the initial set, no random start
    ref, ref_radii = _plain(X, int(order[0]), 15, initial=initial)
    assert order.tolist() == ref
    np.testing.assert_allclose(radii, ref_radii, rtol=1e-4)
    with pytest.raises(UsageError, match="initial"):
        kcenter_greedy(X, 5, initial=[250])
    with pytest.raises(UsageError, match="cannot pick"):
        kcenter_greedy(X, 247, initial=initial)


def _plain_budget(X, costs, budget, first):
    """Reference: each pick is the farthest unselected row whose cost still fits."""
    X = X.astype(np.float64)
    mind = np.full(len(X), np.inf)
    order, left, j = [], budget, first
    while j is not None:
        order.append(j)
        left -= costs[j]
        mind = np.minimum(mind, ((X - X[j]) ** 2).sum(1))
        key = np.where(costs <= left, mind, -np.inf)
        key[order] = -np.inf
        j = int(np.argmax(key)) if key.max() > -np.inf else None
    return order


@pytest.mark.parametrize("seed", range(4))
def test_token_budget_never_exceeded_and_matches_reference(seed):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((300, 6)).astype(np.float32)
    costs = rng.integers(1, 200, 300).astype(float)
    budget = float(rng.integers(500, 3000))
    order, radii = kcenter_greedy(X, budget_cost=budget, costs=costs, metric="euclidean", random_state=seed,
                                  block_size=4)
    assert costs[order].sum() <= budget
    assert len(set(order.tolist())) == len(order) == len(radii)
    fits = costs[order[0]] <= budget
    assert fits
    assert order.tolist() == _plain_budget(X, costs, budget, int(order[0]))
    rest = np.setdiff1d(np.arange(300), order)
    assert costs[rest].min() > budget - costs[order].sum()  # stopped only when nothing fits


def test_token_budget_smaller_than_every_row_picks_nothing():
    X = np.random.default_rng(0).standard_normal((20, 3)).astype(np.float32)
    order, radii = kcenter_greedy(X, budget_cost=5, costs=np.full(20, 10.0))
    assert len(order) == 0 and len(radii) == 0


def test_duplicates_and_full_pool():
    X = np.ones((30, 4), dtype=np.float32)
    order, radii = kcenter_greedy(X, 30, random_state=0)
    assert sorted(order.tolist()) == list(range(30))
    assert np.all(radii == 0)


@pytest.mark.parametrize("kwargs, match", [
    ({"k": 3, "metric": "manhattan"}, "metric"),
    ({"k": -1}, "k must"),
    ({}, "exactly one budget"),
    ({"k": 2, "budget_cost": 10, "costs": np.ones(5)}, "exactly one budget"),
    ({"budget_cost": 10}, "costs"),
    ({"budget_cost": 10, "costs": np.ones(4)}, "one number per row"),
    ({"budget_cost": 10, "costs": -np.ones(5)}, ">= 0"),
    ({"k": 6}, "cannot pick"),
])
def test_bad_arguments(kwargs, match):
    X = np.random.default_rng(0).standard_normal((5, 3)).astype(np.float32)
    with pytest.raises(UsageError, match=match):
        kcenter_greedy(X, **kwargs)


def test_bad_embeddings():
    with pytest.raises(UsageError, match="NaN"):
        kcenter_greedy(np.array([[1.0, np.nan], [0.0, 1.0]]), 1)
    with pytest.raises(UsageError, match="all zeros"):
        kcenter_greedy(np.array([[1.0, 0.0], [0.0, 0.0]]), 1)
    with pytest.raises(UsageError, match="2-D"):
        kcenter_greedy(np.ones(5), 1)


# -- the selector step -------------------------------------------------------
def _pool(n: int = 120, d: int = 8, seed: int = 0):
    rng = np.random.default_rng(seed)
    X = _unit(rng.standard_normal((n, d)))
    tokens = rng.integers(5, 60, n)
    ds = Dataset.from_table(pa.table({"text": [f"row {i}" for i in range(n)], "tokens": tokens}))
    return ds, X, tokens


def test_selector_rows_budget():
    ds, X, _ = _pool()
    sel = KCenterSelector(random_state=3).select(ds, Budget.parse(n=10), features={"embedding": X})
    order, radii = kcenter_greedy(X, 10, random_state=3)
    assert sel.indices.tolist() == order.tolist()
    assert sel.method == "kcenter" and sel.seed == 3 and sel.pool_size == 120
    assert np.isnan(sel.pi).all() and np.isnan(sel.weights).all()
    assert sel.diagnostics["covering_radius"] == pytest.approx(radii[-1])
    assert sel.params == {"metric": "cosine", "initial": None, "embedding": "embedding", "block_size": 64,
                          "partitions": None}
    assert len(KCenterSelector(random_state=3).select(ds, Budget.parse(fraction=0.25), {"embedding": X})) == 30
    assert len(KCenterSelector(random_state=3).select(ds, 500, {"embedding": X})) == 120  # clamped to the pool


def test_selector_token_budget_and_initial():
    ds, X, tokens = _pool()
    sel = KCenterSelector(initial=[0, 1], random_state=0).select(
        ds, Budget.parse(tokens=300), features={"embedding": X, "tokens": tokens})
    assert tokens[sel.indices].sum() <= 300
    assert sel.diagnostics["tokens_used"] == tokens[sel.indices].sum()
    assert sel.diagnostics["n_initial"] == 2 and not {0, 1} & set(sel.indices.tolist())
    assert sel.diagnostics["initial_radius"] >= sel.diagnostics["covering_radius"]
    # without a `tokens` feature, the dataset's `tokens` column is used
    again = KCenterSelector(initial=[0, 1], random_state=0).select(ds, Budget.parse(tokens=300), {"embedding": X})
    assert again.indices.tolist() == sel.indices.tolist()


def test_selector_reads_an_embedding_column():
    ds, X, _ = _pool(40)
    table = ds.table.append_column("vec", pa.array(X.tolist(), pa.list_(pa.float32(), X.shape[1])))
    sel = KCenterSelector(embedding="vec", random_state=1).select(Dataset.from_table(table), 5)
    assert sel.indices.tolist() == kcenter_greedy(X, 5, random_state=1)[0].tolist()


def test_selector_errors():
    ds, X, _ = _pool(30)
    with pytest.raises(UsageError, match="needs the feature 'embedding'"):
        KCenterSelector().select(ds, 5)
    with pytest.raises(UsageError, match="has 29 rows but the pool has 30"):
        KCenterSelector().select(ds, 5, {"embedding": X[:29]})
    with pytest.raises(UsageError, match="metric"):
        KCenterSelector(metric="l1")
    with pytest.raises(UsageError, match="random_state"):
        KCenterSelector(random_state=-1)
    with pytest.raises(UsageError, match="initial"):
        KCenterSelector(initial=[[1, 2]])
    assert KCenterSelector().requires == ["embedding"]
