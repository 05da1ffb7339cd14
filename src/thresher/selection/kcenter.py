"""Greedy k-center (farthest-point) selection on embeddings.

Each pick is the row farthest from everything picked so far (Gonzalez 1985):
the covering radius is at most twice the optimal k-center radius.

`kcenter_greedy` makes exactly the picks of the plain loop

    d = ((X - X[j]) ** 2).sum(1); mind = np.minimum(mind, d); j = mind.argmax()

but without one pass over X per pick. It keeps a pool of candidates (the rows
farthest from the selection when the pool was filled) and computes their
distance rows together, as one matrix product. A candidate is picked only
when its current distance is at least the largest distance any row outside
the pool had at refill time; distances only shrink, so that pick is the true
argmax. Distances come from dot products (|x - c|^2 = |x|^2 + |c|^2 - 2 x.c)
in float32, so near-ties may resolve differently from a float64 loop.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from thresher.core.budget import Budget
from thresher.core.selection import Selection
from thresher.data.dataset import Dataset
from thresher.errors import UsageError
from thresher.sampling._common import Design, check_choice, check_field_name, check_int, check_random_state
from thresher.selection._inputs import as_matrix, check_budget, step_inputs, unit_rows
from thresher.selection._similarity import dot_rows, min_sqdist

KCENTER_METRICS = ("cosine", "euclidean")


def kcenter_greedy(X: Any, k: int | None = None, *, budget_cost: float | None = None, costs: Any = None,
                   initial: Any = None, metric: str = "cosine", block_size: int = 64,
                   random_state: int | np.random.Generator | None = 0) -> tuple[np.ndarray, np.ndarray]:
    """Greedy k-center on the rows of `X`; returns (order, radii).

    metric: "cosine" normalises the rows and uses the cosine distance
        1 - cos; "euclidean" uses |x - c| on `X` as given. Both pick the same
        rows on unit vectors (|x - c|^2 = 2 (1 - cos)).
    k: number of rows to pick, or
    budget_cost + costs: pick while the running cost fits: each pick is the
        farthest row among those whose cost still fits the remaining budget;
        stops when none fits. The budget is never exceeded.
    initial: rows already selected (e.g. labelled ones): distances start
        from them; they are not returned and do not count against the budget.
        Without `initial`, the first pick is a seeded uniformly random row
        (among the rows that fit a cost budget).
    block_size: candidates whose distance rows are computed together (speed
        only; holds 2 * block_size * N float32 values).

    order: the picked rows (int64), in pick order. radii: float64, radii[t]
    is the covering radius max_i min_{c in initial + order[:t+1]} dist(i, c).
    """
    order, radii, _ = _kcenter(X, k, budget_cost, costs, initial, metric, block_size, random_state)
    return order, radii


def _kcenter(X: Any, k: int | None, budget_cost: float | None, costs: Any, initial: Any, metric: str,
             block_size: int, random_state: Any) -> tuple[np.ndarray, np.ndarray, float | None]:
    """`kcenter_greedy` plus the covering radius of `initial` alone (None without it)."""
    check_choice("metric", metric, KCENTER_METRICS)
    check_int("block_size", block_size, 1)
    X = unit_rows(X) if metric == "cosine" else as_matrix(X)
    n = len(X)
    k, costs = check_budget(n, k, budget_cost, costs)
    initial = _initial_rows(initial, n)
    if k is not None and k > n - len(initial):
        raise UsageError(f"cannot pick {k} rows: the pool has {n} rows and {len(initial)} are in `initial`")
    sq = np.ones(n, dtype=np.float32) if metric == "cosine" else np.einsum("ij,ij->i", X, X)
    state = _FarthestPoint(X, sq, costs, budget_cost, block_size)
    initial_sq = state.start(initial, np.random.default_rng(random_state))
    state.run(k if k is not None else n)
    order, radii_sq = state.result()
    to_dist = (lambda r2: r2 / 2) if metric == "cosine" else np.sqrt
    return order, to_dist(radii_sq), None if initial_sq is None else float(to_dist(initial_sq))


def _initial_rows(initial: Any, n: int) -> np.ndarray:
    if initial is None:
        return np.empty(0, dtype=np.int64)
    rows = np.asarray(initial)
    if rows.ndim != 1 or (len(rows) and not np.issubdtype(rows.dtype, np.integer)):
        raise UsageError("initial must be a 1-D list of row indices")
    rows = rows.astype(np.int64)
    if len(rows) and (rows.min() < 0 or rows.max() >= n):
        raise UsageError(f"initial holds row indices outside the pool (0..{n - 1})")
    return np.unique(rows)


class _FarthestPoint:
    """Farthest-point state: squared distances to the selection and the candidate pool."""

    def __init__(self, X: np.ndarray, sq: np.ndarray, costs: np.ndarray | None, budget: float | None,
                 block_size: int):
        self.X, self.sq, self.costs = X, sq, costs
        n = len(X)
        self.mind = np.full(n, np.inf, dtype=np.float32)  # squared distance to the selection; -inf: selected
        # key: mind where the row can still be picked, -inf elsewhere. Under a
        # row budget it is `mind` itself.
        self.key = self.mind if costs is None else np.full(n, np.inf, dtype=np.float32)
        self.left = budget
        if costs is not None:
            self.by_cost = np.argsort(-costs, kind="stable")  # rows that stop fitting form a prefix
            self.neg_sorted = -costs[self.by_cost]
            self.n_unfit = 0
        self.cap = min(2 * block_size, n)
        self.block = block_size
        self.G = np.empty((self.cap, n), dtype=np.float32)  # dot products of the pool rows with X
        self.slot_row = np.full(self.cap, -1, dtype=np.int64)
        self.bound = np.inf  # no row outside the pool has key above this
        self.buf = np.empty(n, dtype=np.float32)
        self.order: list[int] = []
        self.radii: list[float] = []

    def start(self, initial: np.ndarray, rng: np.random.Generator) -> float | None:
        """Distances from `initial`, or a random first pick; the squared radius of `initial`."""
        radius_sq = None
        if len(initial):
            self.mind[:] = np.maximum(min_sqdist(self.X, self.sq, initial), 0)
            radius_sq = float(self.mind.max())
            self.mind[initial] = -np.inf
            if self.costs is not None:
                self.key[:] = self.mind
        self._drop_unfit()
        if len(initial) == 0:
            eligible = np.flatnonzero(self.key > -np.inf)
            if len(eligible):
                j = int(eligible[rng.integers(len(eligible))])
                self._pick(j, self.X @ self.X[j])
        return radius_sq

    def run(self, k: int) -> None:
        tight = False  # is `bound` the exact maximum outside the pool?
        while len(self.order) < k:
            live = np.flatnonzero(self.slot_row >= 0)
            if len(live):
                vals = self.key[self.slot_row[live]]
                best = int(np.argmax(vals))
                if vals[best] > -np.inf and vals[best] >= self.bound:
                    slot = int(live[best])
                    j = int(self.slot_row[slot])
                    self.slot_row[slot] = -1
                    self._pick(j, self.G[slot])
                    tight = False
                    continue
                if not tight:  # picks since the refill lowered keys outside the pool too
                    self.bound, tight = self._max_outside(), True
                    continue
            if self.bound == -np.inf or not self._refill():
                break  # nothing left that can be picked
            tight = True

    def _max_outside(self) -> float:
        held = self.slot_row[self.slot_row >= 0]
        saved = self.key[held]
        self.key[held] = -np.inf
        out = float(self.key.max())
        self.key[held] = saved
        return out

    def _pick(self, j: int, dots: np.ndarray) -> None:
        d = np.multiply(dots, -2, out=self.buf)
        d += self.sq
        d += self.sq[j]
        np.minimum(self.mind, d, out=self.mind)
        self.mind[j] = -np.inf
        if self.costs is not None:
            np.minimum(self.key, d, out=self.key)
            self.key[j] = -np.inf
            self.left -= self.costs[j]
            self._drop_unfit()
        self.order.append(j)
        self.radii.append(max(float(self.mind.max()), 0.0))

    def _drop_unfit(self) -> None:
        if self.costs is None:
            return
        stop = int(np.searchsorted(self.neg_sorted, -self.left, side="left"))  # first row whose cost fits
        if stop > self.n_unfit:
            self.key[self.by_cost[self.n_unfit:stop]] = -np.inf
            self.n_unfit = stop

    def _refill(self) -> bool:
        """Add the rows with the largest key outside the pool; False when none can be picked."""
        n = len(self.X)
        held = self.slot_row >= 0
        self.slot_row[held & (self.key[np.maximum(self.slot_row, 0)] == -np.inf)] = -1  # never pickable
        live = np.flatnonzero(self.slot_row >= 0)
        free = self.cap - len(live)
        if free < self.block:  # evict the weakest candidates: their key fell below the bound
            weakest = live[np.argsort(self.key[self.slot_row[live]], kind="stable")[: self.block - free]]
            self.slot_row[weakest] = -1
        key = self.key.copy()
        key[self.slot_row[self.slot_row >= 0]] = -np.inf
        r = min(self.block, n)
        top = np.argpartition(key, n - r)[n - r:] if r < n else np.arange(n)
        top = top[key[top] > -np.inf]
        if len(top) == 0:
            self.bound = -np.inf
            return bool((self.slot_row >= 0).any())
        key[top] = -np.inf
        self.bound = float(key.max())
        slots = np.flatnonzero(self.slot_row < 0)[: len(top)]
        self.slot_row[slots] = top
        self.G[slots] = dot_rows(self.X, top)
        return True

    def result(self) -> tuple[np.ndarray, np.ndarray]:
        return np.asarray(self.order, dtype=np.int64), np.asarray(self.radii, dtype=np.float64)


class KCenterSelector(Design):
    """Diversity selection by greedy k-center on an embedding feature.

    Picks rows one at a time, each the farthest (cosine distance 1 - cos, or
    Euclidean) from those already picked, so the subset covers the embedding
    space: every pool row lies within the covering radius of a picked row,
    at most twice the best radius any subset of that size achieves.

    Parameters
    ----------
    metric: "cosine" (default) or "euclidean"; see `kcenter_greedy`.
    initial: row indices already selected (e.g. labelled in active learning);
        new picks are far from them; they are not part of the Selection.
    embedding: name of the embedding feature ((N, d) floats).
    block_size: candidates evaluated per matrix product (speed only).
    random_state: seed for the first pick (when `initial` is empty).
    partitions: None (default) for the one-machine greedy; P > 1 for the
        two-stage k-center (`two_stage`): each of P row ranges picks its own
        centers, one task each (on Ray under `--executor ray`), then the
        greedy picks among them. Radius at most 4x optimal instead of 2x;
        the same picks on any executor.

    A row or fraction budget picks that many rows; a token budget picks, at
    each step, the farthest row whose `tokens` still fit, until none fits.
    Indices come in pick order; pi and weights are NaN (no design probabilities).
    """

    method = "kcenter"

    def __init__(self, metric: str = "cosine", initial: Any = None, embedding: str = "embedding",
                 block_size: int = 64, random_state: int | np.random.Generator | None = None,
                 partitions: int | None = None):
        self.metric = metric
        self.initial = initial
        self.embedding = embedding
        self.block_size = block_size
        self.random_state = random_state
        self.partitions = partitions
        check_choice("metric", metric, KCENTER_METRICS)
        check_field_name("embedding", embedding)
        check_int("block_size", block_size, 1)
        check_random_state(random_state)
        if partitions is not None:
            check_int("partitions", partitions, 1)
        if initial is not None:
            _initial_rows(initial, np.iinfo(np.int64).max)

    @property
    def requires(self) -> list[str]:
        return [self.embedding]

    def select(self, ds: Dataset, budget: int | Budget,
               features: dict[str, np.ndarray] | None = None) -> Selection:
        """Pick rows of `ds` by greedy k-center; indices in pick order."""
        X, k, costs, budget_cost = step_inputs(ds, features, self.embedding, budget, type(self).__name__)
        initial = _initial_rows(self.initial, len(ds))
        if k is not None:
            k = min(k, len(ds) - len(initial))
        if self.partitions is not None and self.partitions > 1:
            order, diagnostics = self._two_stage(X, k, budget_cost, costs, initial)
        else:
            order, radii, initial_radius = _kcenter(X, k, budget_cost, costs, initial, self.metric,
                                                    self.block_size, self.random_state)
            diagnostics = {"covering_radius": float(radii[-1]) if len(radii) else None}
            if initial_radius is not None:
                diagnostics["initial_radius"] = initial_radius
        diagnostics.update({"metric": self.metric, "distance": "1 - cos" if self.metric == "cosine" else "euclidean",
                            "n_initial": int(len(initial))})
        if costs is not None:
            diagnostics["tokens_used"] = float(costs[order].sum())
            diagnostics["token_budget"] = budget_cost
        nan = np.full(len(order), np.nan)
        return Selection(indices=np.asarray(order, np.int64), pi=nan, weights=nan.copy(), method=self.method,
                         params=self.get_params(), seed=self._seed(), pool_size=len(ds),
                         diagnostics=diagnostics)

    def _two_stage(self, X, k, budget_cost, costs, initial) -> tuple[np.ndarray, dict[str, Any]]:
        from thresher.selection.two_stage import two_stage

        X = unit_rows(X) if self.metric == "cosine" else as_matrix(X)
        result = two_stage(X, k, partitions=self.partitions, budget_cost=budget_cost, costs=costs, initial=initial,
                           pick=partition_kcenter, measure=partition_radius, combine=lambda r: max(r, default=0.0),
                           options=(self.metric, self.block_size), rng=np.random.default_rng(self.random_state))
        return result.order, {"covering_radius": result.pool_score if len(result.order) else None,
                              "two_stage": {"partitions": self.partitions, "candidates": result.candidates}}


def partition_kcenter(X, k, budget_cost, costs, initial, seed, options) -> np.ndarray:
    """Greedy k-center on one partition (or on the candidates), for `two_stage`."""
    metric, block_size = options
    return _kcenter(X, k, budget_cost, costs, initial, metric, block_size, seed)[0]


def partition_radius(X: np.ndarray, centers: np.ndarray, options) -> float:
    """The largest distance from a row of `X` to its nearest center."""
    metric = options[0]
    if len(X) == 0:
        return 0.0
    if len(centers) == 0:
        return float("inf")
    both = np.concatenate([X, centers])
    sq = np.einsum("ij,ij->i", both, both)
    d2 = np.maximum(min_sqdist(both, sq, np.arange(len(X), len(both)))[:len(X)], 0)
    return float(d2.max() / 2) if metric == "cosine" else float(np.sqrt(d2.max()))
