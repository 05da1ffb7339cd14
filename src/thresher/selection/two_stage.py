"""Two-stage diversity selection: each partition of the pool picks its own
rows, then the same greedy picks the final ones among the partitions' picks.

k-center: the two-round algorithm of Malkomes et al. (2015, "Fast distributed
k-center clustering with outliers on massive data"): with each partition's
greedy k centers as its summary, the final greedy's radius is at most 4x the
optimal (the one-machine greedy: 2x). Facility location: GreeDi
(Mirzasoleiman et al. 2013, "Distributed submodular maximization"), whose
final greedy runs on the union of the partitions' greedy picks; its bound is
weaker than the one-machine (1 - 1/e), so the pool's real objective is
measured and reported next to the one-machine figures. Partitions are contiguous row ranges
and their seeds are drawn from the step's seed, so the picks depend only on
`partitions` and the seed, never on where the partitions run: one task per
partition on the active executor (Ray tasks under `--executor ray`, this
process otherwise). The covering radius over every row is then measured, a
partition per task, so the diagnostics report the real radius (facility:
the real objective over every row), not the candidates' one.

This module is the schedule only; the selectors (`kcenter`, `facility`)
pass in their greedy and their measure as module-level functions, which a
Ray task can pickle by reference.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from thresher.features.execution import current_executor

# pick(X, k, costs, budget_cost, initial, seed, options) -> picked rows of X, in pick order
Pick = Callable[..., np.ndarray]
# measure(X, chosen rows' vectors, options) -> one partition's share of the pool's score
Measure = Callable[..., float]


@dataclass
class TwoStageResult:
    order: np.ndarray  # picked rows, in the final greedy's pick order
    pool_score: float  # over every row: k-center's covering radius, facility's objective
    candidates: int


def partition_bounds(n: int, partitions: int) -> np.ndarray:
    """Start rows of `partitions` near-equal contiguous ranges, plus n."""
    return np.linspace(0, n, min(partitions, max(n, 1)) + 1).round().astype(np.int64)


def two_stage(X: np.ndarray, k: int | None, *, partitions: int, budget_cost: float | None,
              costs: np.ndarray | None, initial: np.ndarray, pick: Pick, measure: Measure,
              combine: Callable[[list[float]], float], options: Any, rng: np.random.Generator) -> TwoStageResult:
    """`pick` on each of `partitions` row ranges of `X` (a task each), then on
    the union of their picks (plus `initial`, which is never picked); the
    pool's score is `combine` of `measure` over the ranges."""
    bounds = partition_bounds(len(X), partitions)
    seeds = rng.integers(0, 2**63 - 1, size=len(bounds))  # one per partition, one for the final stage
    executor = current_executor()
    ranges = list(zip(bounds[:-1].tolist(), bounds[1:].tolist()))
    jobs = [(np.ascontiguousarray(X[a:b]), None if k is None else min(k, b - a),
             None if costs is None else costs[a:b], budget_cost, np.zeros(0, np.int64), int(seed), options)
            for (a, b), seed in zip(ranges, seeds)]
    picks = [order + a for order, (a, _) in zip(executor.map_shards(_pick_job, jobs, pick), ranges)]
    candidates = np.unique(np.concatenate(picks + [initial]))
    local_initial = np.searchsorted(candidates, initial)
    if k is not None:
        k = min(k, len(candidates) - len(initial))
    final = pick(X[candidates], k, budget_cost, None if costs is None else costs[candidates], local_initial,
                 int(seeds[-1]), options)
    order = candidates[final]
    chosen = np.ascontiguousarray(X[np.concatenate([initial, order])])
    shares = executor.map_shards(_measure_job, [(np.ascontiguousarray(X[a:b]), options) for a, b in ranges],
                                 chosen, measure)
    return TwoStageResult(order, float(combine(list(shares))), int(len(candidates)))


def _pick_job(job, pick: Pick) -> np.ndarray:
    X, k, costs, budget_cost, initial, seed, options = job
    return pick(X, k, budget_cost, costs, initial, seed, options) if len(X) else np.zeros(0, np.int64)


def _measure_job(job, chosen: np.ndarray, measure: Measure) -> float:
    X, options = job
    return measure(X, chosen, options)
