"""Facility location: lazy greedy against a naive greedy, kNN graphs against
brute force, budgets, determinism and the selector step."""
from itertools import combinations

import numpy as np
import pyarrow as pa
import pytest

from thresher.core.budget import Budget
from thresher.data.dataset import Dataset
from thresher.errors import UsageError
from thresher.selection._similarity import coverage, dense_similarity, exact_knn, knn_graph, partitioned_knn
from thresher.selection.facility import FacilityLocationSelector, facility_location, facility_select


def _unit(X: np.ndarray) -> np.ndarray:
    return (X / np.linalg.norm(X, axis=1, keepdims=True)).astype(np.float32)


def _clustered(n: int, d: int = 16, clusters: int = 12, noise: float = 0.5, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centers = _unit(rng.standard_normal((clusters, d)))
    return _unit(centers[rng.integers(0, clusters, n)] + noise * rng.standard_normal((n, d)) / np.sqrt(d))


def _sim(X: np.ndarray, metric: str) -> np.ndarray:
    cos = X.astype(np.float32) @ X.astype(np.float32).T
    return (cos ** 2 if metric == "squared_cosine" else np.maximum(cos, 0)).astype(np.float64)


def _naive_greedy(S: np.ndarray, k: int, costs=None, budget=None, ratio=False):
    """Plain (non-lazy) greedy: every remaining gain recomputed at every step."""
    n = len(S)
    cur, order, left = np.zeros(n), [], np.inf if budget is None else budget
    costs = np.ones(n) if costs is None else costs
    while len(order) < k:
        gains = np.maximum(S - cur, 0).sum(axis=1)
        prio = gains / costs if ratio else gains.copy()
        prio[order] = -np.inf
        prio[costs > left] = -np.inf
        if prio.max() == -np.inf:
            break
        j = int(np.argmax(prio))
        order.append(j)
        left -= costs[j]
        cur = np.maximum(cur, S[j])
    return order, cur.sum()


@pytest.mark.parametrize("metric", ["squared_cosine", "cosine"])
@pytest.mark.parametrize("batch_size", [1, 7, 64])
def test_lazy_picks_equal_naive_greedy(metric, batch_size):
    X = _unit(np.random.default_rng(3).standard_normal((300, 10)))
    order, gains, objective = facility_location(X, 40, metric=metric, graph="dense", batch_size=batch_size)
    ref, ref_obj = _naive_greedy(_sim(X, metric), 40)
    assert order.tolist() == ref
    assert objective == pytest.approx(ref_obj, rel=1e-6)
    assert gains.sum() == pytest.approx(objective, rel=1e-6)
    assert np.all(np.diff(gains) <= 1e-6 * gains[0])  # submodular: greedy gains never grow
    assert coverage(X, order, metric) == pytest.approx(objective, rel=1e-6)


def test_full_knn_graph_equals_dense():
    X = _clustered(250)
    dense = facility_location(X, 30, graph="dense")
    full = facility_location(X, 30, graph="knn", n_neighbors=250, knn="exact")
    assert dense[0].tolist() == full[0].tolist()
    assert dense[2] == pytest.approx(full[2], rel=1e-6)


@pytest.mark.parametrize("seed", range(3))
def test_objective_within_greedy_guarantee_of_optimum(seed):
    X = _unit(np.random.default_rng(seed).standard_normal((11, 3)))
    S = _sim(X, "squared_cosine")
    best = max(S[list(s)].max(axis=0).sum() for s in combinations(range(11), 3))
    _, _, objective = facility_location(X, 3, graph="dense")
    assert (1 - 1 / np.e) * best - 1e-9 <= objective <= best + 1e-6


@pytest.mark.parametrize("metric", ["squared_cosine", "cosine"])
def test_exact_knn_matches_brute_force(metric):
    X = _clustered(333, d=8, noise=1.0, seed=5)
    idx, val = exact_knn(X, 7, metric, block=64)  # many block pairs, pending merges
    S = _sim(X, metric) if metric == "squared_cosine" else (X @ X.T).astype(np.float64)
    top = np.sort(S, axis=1)[:, -7:]
    np.testing.assert_allclose(np.sort(val, axis=1), top, atol=1e-5)
    assert (idx == np.arange(333)[:, None]).any(axis=1).all()  # every row is its own neighbour
    got = np.take_along_axis(S, idx.astype(np.int64), axis=1)
    np.testing.assert_allclose(got, val, atol=1e-5)
    assert all(len(set(r)) == 7 for r in idx.tolist())


def test_knn_graph_layout():
    X = _clustered(200)
    G = knn_graph(X, 5, "cosine", "exact")
    assert G.shape == (200, 200) and G.nnz == 200 * 5
    assert np.all(np.asarray((G > 0).sum(axis=0)).ravel() == 5)  # every row has 5 candidates covering it
    cos = X @ X.T
    rows, cols = G.nonzero()
    np.testing.assert_allclose(np.asarray(G[rows, cols]).ravel(), np.maximum(cos[cols, rows], 0), atol=1e-5)


def test_partitioned_knn_recall_on_clustered_data():
    X = _clustered(3000, d=16, clusters=30, noise=0.7, seed=2)
    truth, _ = exact_knn(X, 10, "squared_cosine")
    approx, _ = partitioned_knn(X, 10, "squared_cosine", None, 4, np.random.default_rng(0))
    recall = np.mean([len(np.intersect1d(a, t)) / 10 for a, t in zip(approx, truth)])
    assert recall > 0.95
    again, _ = partitioned_knn(X, 10, "squared_cosine", None, 4, np.random.default_rng(0))
    assert np.array_equal(approx, again)


@pytest.mark.parametrize("knn", ["exact", "partitioned"])
def test_sparse_graph_close_to_dense_on_clustered_data(knn):
    X = _clustered(2000, clusters=20, noise=0.6, seed=4)
    dense_order, _, dense_obj = facility_location(X, 40, graph="dense")
    order, _, graph_obj = facility_location(X, 40, graph="knn", knn=knn, n_neighbors=30, random_state=0)
    assert coverage(X, order) >= 0.98 * dense_obj
    assert graph_obj <= coverage(X, order) + 1e-6  # the graph only drops similarities
    assert len(set(order.tolist())) == 40


def test_token_budget_never_exceeded_and_best_of_two_rules():
    rng = np.random.default_rng(6)
    X = _unit(rng.standard_normal((150, 6)))
    costs = rng.integers(1, 50, 150).astype(float)
    S = _sim(X, "squared_cosine")
    for budget in (1.0, 60.0, 400.0, 5000.0):
        res = facility_select(X, budget_cost=budget, costs=costs, graph="dense")
        assert costs[res.order].sum() <= budget
        ratio_order, ratio_obj = _naive_greedy(S, 150, costs, budget, ratio=True)
        gain_order, gain_obj = _naive_greedy(S, 150, costs, budget, ratio=False)
        expect = ratio_order if ratio_obj >= gain_obj else gain_order
        assert res.order.tolist() == expect
        assert res.objective == pytest.approx(max(ratio_obj, gain_obj), rel=1e-6)
        assert res.cost_rule == ("ratio" if ratio_obj >= gain_obj else "gain")
        rest = np.setdiff1d(np.arange(150), res.order)
        if len(rest):
            assert costs[rest].min() > budget - costs[res.order].sum()  # nothing left fits


def test_zero_cost_rows_and_zero_budget():
    X = _unit(np.random.default_rng(0).standard_normal((20, 4)))
    costs = np.full(20, 5.0)
    costs[[3, 7]] = 0
    order, _, _ = facility_location(X, budget_cost=0, costs=costs, graph="dense")
    assert sorted(order.tolist()) == [3, 7]


def test_deterministic_and_seeded():
    X = _clustered(6000, seed=9)
    a = facility_location(X, 25, random_state=1)  # auto: kNN graph, exact search
    b = facility_location(X, 25, random_state=1)
    assert a[0].tolist() == b[0].tolist() and a[2] == b[2]
    p1 = facility_location(X, 25, graph="knn", knn="partitioned", random_state=4)
    p2 = facility_location(X, 25, graph="knn", knn="partitioned", random_state=4)
    assert p1[0].tolist() == p2[0].tolist()


def test_k_zero_and_all_rows():
    X = _unit(np.random.default_rng(1).standard_normal((12, 3)))
    assert len(facility_location(X, 0)[0]) == 0
    order, gains, objective = facility_location(X, 12, graph="dense")
    assert sorted(order.tolist()) == list(range(12))
    assert objective == pytest.approx(12.0, rel=1e-5)  # every row covers itself with cos^2 = 1


@pytest.mark.parametrize("kwargs, match", [
    ({"k": 3, "metric": "dot"}, "metric"),
    ({"k": 3, "graph": "full"}, "graph"),
    ({"k": 3, "knn": "hnsw"}, "knn"),
    ({"k": 3, "n_neighbors": 0}, "n_neighbors"),
    ({"k": 11}, "cannot pick 11"),
    ({}, "exactly one budget"),
    ({"budget_cost": 3.0, "costs": np.ones(9)}, "one number per row"),
])
def test_bad_arguments(kwargs, match):
    X = _unit(np.random.default_rng(0).standard_normal((10, 3)))
    with pytest.raises(UsageError, match=match):
        facility_location(X, **kwargs)


# -- the selector step -------------------------------------------------------
def _pool(n: int = 150):
    rng = np.random.default_rng(2)
    X = _clustered(n, seed=2)
    tokens = rng.integers(10, 80, n)
    ds = Dataset.from_table(pa.table({"text": [f"row {i}" for i in range(n)]}))
    return ds, X, tokens


def test_selector_rows_and_fraction():
    ds, X, _ = _pool()
    sel = FacilityLocationSelector().select(ds, Budget.parse(n=12), features={"embedding": X})
    order, _, objective = facility_location(X, 12)
    assert sel.indices.tolist() == order.tolist()
    assert sel.method == "facility" and sel.seed is None and sel.pool_size == 150
    assert np.isnan(sel.pi).all() and np.isnan(sel.weights).all()
    d = sel.diagnostics
    assert d["objective"] == pytest.approx(objective) and d["graph"] == "dense"
    assert d["objective_per_row"] == pytest.approx(objective / 150)
    assert len(FacilityLocationSelector().select(ds, Budget.parse(fraction=0.1), {"embedding": X})) == 15
    knn = FacilityLocationSelector(graph="knn", n_neighbors=10, random_state=0).select(ds, 5, {"embedding": X})
    assert knn.diagnostics["graph"] == "knn" and knn.diagnostics["knn"] == "exact"
    assert knn.diagnostics["n_neighbors"] == 10 and knn.seed == 0


def test_selector_token_budget():
    ds, X, tokens = _pool()
    sel = FacilityLocationSelector().select(ds, Budget.parse(tokens=500), {"embedding": X, "tokens": tokens})
    assert tokens[sel.indices].sum() <= 500
    assert sel.diagnostics["tokens_used"] == tokens[sel.indices].sum()
    assert sel.diagnostics["cost_rule"] in ("ratio", "gain")
    with pytest.raises(UsageError, match="tokens"):
        FacilityLocationSelector().select(ds, Budget.parse(tokens=500), {"embedding": X})


def test_selector_validation():
    with pytest.raises(UsageError, match="graph"):
        FacilityLocationSelector(graph="sparse")
    with pytest.raises(UsageError, match="n_neighbors"):
        FacilityLocationSelector(n_neighbors=0)
    with pytest.raises(UsageError, match="embedding"):
        FacilityLocationSelector(embedding="")
    assert FacilityLocationSelector(embedding="vec").requires == ["vec"]


def test_dense_similarity_blocks_match_direct_product():
    X = _unit(np.random.default_rng(5).standard_normal((2100, 5)))  # more rows than one block
    S = dense_similarity(X, "cosine")
    np.testing.assert_allclose(S, np.maximum(X @ X.T, 0), atol=1e-6)


def test_dense_graph_refuses_huge_matrices_and_empty_pools_work():
    X = np.ones((40_000, 2), dtype=np.float32)
    with pytest.raises(UsageError, match="graph='knn'"):
        facility_location(X, 1, graph="dense")
    for graph in ("dense", "knn"):
        order, gains, objective = facility_location(np.empty((0, 3), np.float32), 0, graph=graph)
        assert len(order) == 0 and objective == 0.0


def test_parallel_map_keeps_order_with_and_without_threadpoolctl(monkeypatch):
    from thresher.selection import _similarity as sim

    assert list(sim.parallel_map(lambda x: x * x, range(50))) == [x * x for x in range(50)]
    monkeypatch.setattr(sim, "_single_threaded_blas", lambda: None)  # threadpoolctl missing
    assert list(sim.parallel_map(lambda x: x * x, range(50))) == [x * x for x in range(50)]
    X = _clustered(500)
    assert coverage(X, [0, 1, 2]) == pytest.approx(float(np.max((X @ X[[0, 1, 2]].T) ** 2, axis=1).sum()), rel=1e-5)
