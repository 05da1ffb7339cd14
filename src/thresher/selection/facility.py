"""Facility-location selection: pick rows that best *represent* the pool.

f(S) = sum_i max_{j in S} sim(i, j) is monotone submodular, so the greedy
picks reach at least (1 - 1/e) of the best f for their size (Nemhauser et al.
1978). The greedy is lazy (Minoux 1978): gains only shrink as S grows, so a
candidate's last computed gain is an upper bound and only the candidates at
the top of a priority queue are re-evaluated; picks equal the plain greedy's.

Similarity: "squared_cosine" (default) is cos^2, apricot's convention for
`metric="cosine"`; "cosine" is max(cos, 0). Either is non-negative and
symmetric. Two ways to hold it:

* graph="dense": the full (N, N) float32 matrix, computed in row blocks
  (N^2 * 4 bytes: the default up to 5,000 rows).
* graph="knn": a sparse graph where a row can only be covered by its
  `n_neighbors` most similar rows (itself included): exact (all pairs, in
  blocks) up to 10,000 rows, else restricted to the nearest spherical k-means
  cells (approximate). The objective is then the graph's.
"""
from __future__ import annotations

import heapq
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import scipy.sparse as sp

from thresher.core.budget import Budget
from thresher.core.selection import Selection
from thresher.data.dataset import Dataset
from thresher.errors import UsageError
from thresher.sampling._common import Design, check_choice, check_field_name, check_int, check_random_state
from thresher.selection._inputs import check_budget, step_inputs, unit_rows
from thresher.selection._similarity import EXACT_KNN_MAX_ROWS, KNN_METHODS, METRICS, dense_similarity, knn_graph

GRAPHS = ("auto", "dense", "knn")
DENSE_MAX_ROWS = 5_000  # graph="auto": a dense float32 matrix up to 100 MB
DENSE_LIMIT_BYTES = 4 << 30  # graph="dense" refuses matrices above 4 GiB (about 32,000 rows)


@dataclass
class FacilityResult:
    """order: picks in greedy order; gains: the marginal gain of each pick;
    objective: f(order) on the similarity used; graph: "dense" or "knn";
    evaluations: gain evaluations done; cost_rule: "ratio" or "gain" (cost budgets)."""

    order: np.ndarray
    gains: np.ndarray
    objective: float
    graph: str
    evaluations: int
    cost_rule: str | None = None
    knn: str | None = None  # "exact" or "partitioned" when graph is "knn"
    seconds: dict[str, float] = field(default_factory=dict)  # "similarity" and "greedy" wall times


def facility_location(X: Any, k: int | None = None, *, budget_cost: float | None = None, costs: Any = None,
                      metric: str = "squared_cosine", graph: str = "auto", n_neighbors: int = 50,
                      knn: str = "auto", n_partitions: int | None = None, n_probe: int = 4,
                      batch_size: int = 32,
                      random_state: int | np.random.Generator | None = 0) -> tuple[np.ndarray, np.ndarray, float]:
    """Lazy-greedy facility location on the rows of `X` (cosine similarities).

    k: number of rows to pick, or
    budget_cost + costs: pick while the running cost fits (never exceeded).
        Two lazy greedies run, one by gain/cost and one by gain alone (both
        skip rows that no longer fit); the better objective is returned, which
        keeps a constant-factor guarantee (Leskovec et al. 2007).
    metric, graph, n_neighbors, knn: the similarity and how it is held (see
        the module docstring). n_partitions / n_probe: cells of the
        partitioned kNN search (default sqrt(N)) and how many each row searches.
    batch_size: stale candidates re-evaluated together (speed only).
    random_state: seeds the k-means of the partitioned kNN search (the greedy
        itself is deterministic; ties go to the lower row index).

    Returns (order, gains, objective): picks in greedy order (int64), the
    marginal gain of each (float64), and f(order).
    """
    res = facility_select(X, k, budget_cost=budget_cost, costs=costs, metric=metric, graph=graph,
                          n_neighbors=n_neighbors, knn=knn, n_partitions=n_partitions, n_probe=n_probe,
                          batch_size=batch_size, random_state=random_state)
    return res.order, res.gains, res.objective


def facility_select(X: Any, k: int | None = None, *, budget_cost: float | None = None, costs: Any = None,
                    metric: str = "squared_cosine", graph: str = "auto", n_neighbors: int = 50,
                    knn: str = "auto", n_partitions: int | None = None, n_probe: int = 4, batch_size: int = 32,
                    random_state: int | np.random.Generator | None = 0) -> FacilityResult:
    """`facility_location` with its diagnostics (a `FacilityResult`)."""
    _check_options(metric, graph, n_neighbors, knn, n_partitions, n_probe, batch_size)
    X = unit_rows(X)
    n = len(X)
    k, costs = check_budget(n, k, budget_cost, costs)
    if k is not None and k > n:
        raise UsageError(f"cannot pick {k} rows from a pool of {n}")
    kind = graph if graph != "auto" else ("dense" if n <= DENSE_MAX_ROWS else "knn")
    search = None
    if kind == "dense" and n * n * 4 > DENSE_LIMIT_BYTES:
        raise UsageError(f"graph='dense' would hold a {n:,} x {n:,} similarity matrix "
                         f"({n * n * 4 / 2**30:.0f} GiB); use graph='knn' (or 'auto')")
    start = time.perf_counter()
    if kind == "dense":
        oracle: _DenseGains | _GraphGains = _DenseGains(dense_similarity(X, metric))
    else:
        search = knn if knn != "auto" else ("exact" if n <= EXACT_KNN_MAX_ROWS else "partitioned")
        rng = np.random.default_rng(random_state)
        oracle = _GraphGains(knn_graph(X, n_neighbors, metric, search, n_partitions, n_probe, rng))
    built = time.perf_counter()
    runs = []
    for rule in ([None] if costs is None else ["ratio", "gain"]):
        oracle.reset()
        order, gains, evals = _lazy_greedy(oracle, k if costs is None else n, costs, budget_cost,
                                           rule == "ratio", batch_size)
        runs.append(FacilityResult(order, gains, oracle.objective(), kind, evals, rule, search))
    best = max(runs, key=lambda r: r.objective)  # ties keep the ratio rule (first)
    best.evaluations = sum(r.evaluations for r in runs)
    best.seconds = {"similarity": built - start, "greedy": time.perf_counter() - built}
    return best


def _check_options(metric: str, graph: str, n_neighbors: int, knn: str, n_partitions: int | None,
                   n_probe: int, batch_size: int) -> None:
    check_choice("metric", metric, METRICS)
    check_choice("graph", graph, GRAPHS)
    check_choice("knn", knn, KNN_METHODS)
    check_int("n_neighbors", n_neighbors, 1)
    check_int("n_partitions", n_partitions, 1, allow_none=True)
    check_int("n_probe", n_probe, 1)
    check_int("batch_size", batch_size, 1)


class _DenseGains:
    """Gains from a dense symmetric similarity matrix."""

    def __init__(self, S: np.ndarray):
        self.S = S
        self.cur = np.zeros(len(S), dtype=np.float32)  # each row's similarity to its best pick

    def initial(self) -> np.ndarray:
        return self.S.sum(axis=1, dtype=np.float64)

    def gains(self, idx: np.ndarray) -> np.ndarray:
        T = self.S[idx] - self.cur
        np.maximum(T, 0, out=T)
        return T.sum(axis=1, dtype=np.float64)

    def add(self, j: int) -> None:
        np.maximum(self.cur, self.S[j], out=self.cur)

    def objective(self) -> float:
        return float(self.cur.sum(dtype=np.float64))

    def reset(self) -> None:
        self.cur[:] = 0


class _GraphGains:
    """Gains from a candidate-major sparse graph: G[j, i] = sim(i, j)."""

    def __init__(self, G: sp.csr_matrix):
        self.indptr = G.indptr.astype(np.int64)
        self.indices, self.data = G.indices, G.data.astype(np.float32, copy=False)
        self.cur = np.zeros(G.shape[0], dtype=np.float32)

    def initial(self) -> np.ndarray:
        return _segment_sums(self.data, self.indptr[:-1], self.indptr[1:])

    def gains(self, idx: np.ndarray) -> np.ndarray:
        start, stop = self.indptr[idx], self.indptr[idx + 1]
        lengths = stop - start
        ends = np.cumsum(lengths)
        pos = np.arange(ends[-1] if len(ends) else 0) + np.repeat(start - (ends - lengths), lengths)
        t = self.data[pos] - self.cur[self.indices[pos]]
        np.maximum(t, 0, out=t)
        return _segment_sums(t, ends - lengths, ends)

    def add(self, j: int) -> None:
        a, b = self.indptr[j], self.indptr[j + 1]
        rows = self.indices[a:b]
        self.cur[rows] = np.maximum(self.cur[rows], self.data[a:b])

    def objective(self) -> float:
        return float(self.cur.sum(dtype=np.float64))

    def reset(self) -> None:
        self.cur[:] = 0


def _segment_sums(values: np.ndarray, starts: np.ndarray, stops: np.ndarray) -> np.ndarray:
    """Sums of values[starts[s]:stops[s]] for every segment (empty ones give 0), in float64."""
    csum = np.concatenate([[0.0], np.cumsum(values, dtype=np.float64)])
    return csum[stops] - csum[starts]


def _lazy_greedy(oracle: _DenseGains | _GraphGains, k: int, costs: np.ndarray | None, budget: float | None,
                 ratio: bool, batch_size: int) -> tuple[np.ndarray, np.ndarray, int]:
    """Lazy greedy: (picks, their gains, evaluations).

    Queue entries are (-priority, row), one per row; priority is the gain
    (or gain/cost when `ratio`) computed when `epoch[row]` rows had been
    picked. A top entry whose epoch is current is exact and beats every upper
    bound below it, so it is picked; stale tops are re-evaluated in batches.
    """
    gains0 = oracle.initial()
    n = len(gains0)
    cost = costs if costs is not None else np.ones(n)
    safe_cost = np.maximum(cost, 1e-12)  # a free row with a positive gain comes first
    prio = gains0 / safe_cost if ratio else gains0
    first = np.lexsort((np.arange(n), -prio))
    heap = list(zip((-prio[first]).tolist(), first.tolist()))  # sorted, hence already a heap
    epoch = np.zeros(n, dtype=np.int64)
    last_gain = gains0.copy()
    left = np.inf if budget is None else budget
    order: list[int] = []
    picked_gains: list[float] = []
    evals = 0
    while heap and len(order) < k:
        j = heap[0][1]
        if cost[j] > left:
            heapq.heappop(heap)  # the budget only shrinks: it never fits again
            continue
        if epoch[j] == len(order):
            heapq.heappop(heap)
            oracle.add(j)
            order.append(j)
            picked_gains.append(float(last_gain[j]))
            left -= cost[j]
            continue
        batch = []
        while heap and len(batch) < batch_size and epoch[heap[0][1]] != len(order):
            j = heapq.heappop(heap)[1]
            if cost[j] <= left:
                batch.append(j)
        if not batch:
            continue
        idx = np.asarray(batch, dtype=np.int64)
        g = oracle.gains(idx)
        evals += len(idx)
        last_gain[idx] = g
        epoch[idx] = len(order)
        p = g / safe_cost[idx] if ratio else g
        for item in zip((-p).tolist(), batch):
            heapq.heappush(heap, item)
    return np.asarray(order, dtype=np.int64), np.asarray(picked_gains, dtype=np.float64), evals


class FacilityLocationSelector(Design):
    """Representative selection by facility location on an embedding feature.

    Picks rows greedily to maximise sum_i max_{j picked} sim(i, j): every pool
    row should have a picked row similar to it, and dense regions get more
    picks than outliers (unlike k-center, which chases outliers).

    Parameters
    ----------
    metric: "squared_cosine" (cos^2, apricot's convention) or "cosine" (max(cos, 0)).
    graph: "auto" (dense up to 5,000 rows, else kNN), "dense" or "knn".
    n_neighbors: neighbours per row in the kNN graph (itself included).
    knn: "auto" (exact up to 10,000 rows), "exact" or "partitioned".
    embedding: name of the embedding feature ((N, d) floats).
    random_state: seeds the partitioned kNN search (more than 10,000 rows);
        None draws fresh entropy there. Everything else is deterministic.
    partitions: None (default) for the one-machine greedy; P > 1 for
        two-stage GreeDi (`two_stage`): each of P row ranges picks its own
        rows, one task each (on Ray under `--executor ray`), then the greedy
        runs on their union. The objective over every row is reported as
        `pool_objective`; the same picks on any executor.

    A row or fraction budget picks that many rows; a token budget
    (`features["tokens"]`) picks while the total fits (see `facility_location`).
    Indices come in greedy order; pi and weights are NaN.
    """

    method = "facility"

    def __init__(self, metric: str = "squared_cosine", graph: str = "auto", n_neighbors: int = 50,
                 knn: str = "auto", embedding: str = "embedding",
                 random_state: int | np.random.Generator | None = None, partitions: int | None = None):
        self.metric = metric
        self.graph = graph
        self.n_neighbors = n_neighbors
        self.knn = knn
        self.embedding = embedding
        self.random_state = random_state
        self.partitions = partitions
        _check_options(metric, graph, n_neighbors, knn, None, 1, 1)
        check_field_name("embedding", embedding)
        check_random_state(random_state)
        check_int("partitions", partitions, 1, allow_none=True)

    @property
    def requires(self) -> list[str]:
        return [self.embedding]

    def select(self, ds: Dataset, budget: int | Budget,
               features: dict[str, np.ndarray] | None = None) -> Selection:
        """Pick rows of `ds` by lazy-greedy facility location; indices in greedy order."""
        X, k, costs, budget_cost = step_inputs(ds, features, self.embedding, budget, type(self).__name__)
        if k is not None:
            k = min(k, len(ds))
        if self.partitions is not None and self.partitions > 1:
            return self._two_stage(ds, X, k, costs, budget_cost)
        res = facility_select(X, k, budget_cost=budget_cost, costs=costs, metric=self.metric, graph=self.graph,
                              n_neighbors=self.n_neighbors, knn=self.knn, random_state=self.random_state)
        diagnostics: dict[str, Any] = {
            "objective": res.objective, "objective_per_row": res.objective / len(ds) if len(ds) else 0.0,
            "graph": res.graph, "metric": self.metric, "evaluations": res.evaluations,
        }
        if res.graph == "knn":
            diagnostics.update(n_neighbors=int(min(self.n_neighbors, len(ds))), knn=res.knn)
        if costs is not None:
            diagnostics.update(cost_rule=res.cost_rule, tokens_used=float(costs[res.order].sum()),
                               token_budget=budget_cost)
        nan = np.full(len(res.order), np.nan)
        return Selection(indices=res.order, pi=nan, weights=nan.copy(), method=self.method,
                         params=self.get_params(), seed=self._seed(), pool_size=len(ds),
                         diagnostics=diagnostics)

    def _two_stage(self, ds: Dataset, X, k, costs, budget_cost) -> Selection:
        from thresher.selection.two_stage import two_stage

        options = {"metric": self.metric, "graph": self.graph, "n_neighbors": self.n_neighbors, "knn": self.knn}
        res = two_stage(unit_rows(X), k, partitions=self.partitions, budget_cost=budget_cost, costs=costs,
                        initial=np.zeros(0, np.int64), pick=partition_facility, measure=partition_objective,
                        combine=sum, options=options, rng=np.random.default_rng(self.random_state))
        diagnostics: dict[str, Any] = {
            "pool_objective": res.pool_score, "objective_per_row": res.pool_score / len(ds) if len(ds) else 0.0,
            "metric": self.metric, "two_stage": {"partitions": self.partitions, "candidates": res.candidates}}
        if costs is not None:
            diagnostics.update(tokens_used=float(costs[res.order].sum()), token_budget=budget_cost)
        nan = np.full(len(res.order), np.nan)
        return Selection(indices=np.asarray(res.order, np.int64), pi=nan, weights=nan.copy(), method=self.method,
                         params=self.get_params(), seed=self._seed(), pool_size=len(ds), diagnostics=diagnostics)


def partition_facility(X, k, budget_cost, costs, initial, seed, options) -> np.ndarray:
    """Lazy-greedy facility location on one partition (or on the candidates), for `two_stage`."""
    return facility_select(X, k, budget_cost=budget_cost, costs=costs, random_state=seed, **options).order


def partition_objective(X: np.ndarray, chosen: np.ndarray, options) -> float:
    """Sum over the rows of `X` of their similarity to the most similar chosen row."""
    if len(X) == 0 or len(chosen) == 0:
        return 0.0
    best = np.full(len(X), -np.inf, dtype=np.float32)
    for a in range(0, len(chosen), 2048):
        np.maximum(best, (X @ chosen[a:a + 2048].T).max(axis=1), out=best)
    if options["metric"] == "squared_cosine":
        return float((best.astype(np.float64) ** 2).sum())
    return float(np.maximum(best, 0).astype(np.float64).sum())
