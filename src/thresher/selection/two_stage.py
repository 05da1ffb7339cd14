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
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from thresher.features.execution import current_executor
from thresher.selection._similarity import min_sqdist


@dataclass
class TwoStageResult:
    order: np.ndarray  # picked rows, in the final greedy's pick order
    pool_score: float  # over every row: k-center's covering radius, facility's objective
    candidate_score: float  # the same over the candidates alone (what the final greedy saw)
    candidates: int


def partition_bounds(n: int, partitions: int) -> np.ndarray:
    """Start rows of `partitions` near-equal contiguous ranges, plus n."""
    return np.linspace(0, n, min(partitions, max(n, 1)) + 1).round().astype(np.int64)


def two_stage_kcenter(X: np.ndarray, k: int | None, *, partitions: int, budget_cost: float | None,
                      costs: np.ndarray | None, initial: np.ndarray, metric: str, block_size: int,
                      rng: np.random.Generator) -> TwoStageResult:
    """Greedy k-center in two stages over `partitions` row ranges of `X`
    (already unit rows for cosine); the budget as in `kcenter_greedy`."""
    from thresher.selection.kcenter import _kcenter

    bounds = partition_bounds(len(X), partitions)
    seeds = rng.integers(0, 2**63 - 1, size=len(bounds))  # one per partition, one for the final stage
    executor = current_executor()
    jobs = [(np.ascontiguousarray(X[a:b]), None if k is None else min(k, int(b - a)),
             None if costs is None else costs[a:b], budget_cost, metric, block_size, int(seed))
            for a, b, seed in zip(bounds[:-1], bounds[1:], seeds)]
    picks = [order + a for order, a in zip(executor.map_shards(_partition_picks, jobs), bounds[:-1])]
    candidates = np.unique(np.concatenate(picks + [initial]))
    local_initial = np.searchsorted(candidates, initial)
    if k is not None:
        k = min(k, len(candidates) - len(initial))
    order, radii, _ = _kcenter(X[candidates], k, budget_cost, None if costs is None else costs[candidates],
                               local_initial, metric, block_size, int(seeds[-1]))
    order = candidates[order]
    centers = np.ascontiguousarray(X[np.concatenate([initial, order])])
    radius = max(executor.map_shards(_partition_radius, [(np.ascontiguousarray(X[a:b]), metric)
                                                          for a, b in zip(bounds[:-1], bounds[1:])], centers),
                 default=0.0)
    return TwoStageResult(order, float(radius), float(radii[-1]) if len(radii) else 0.0, int(len(candidates)))


def _partition_picks(job) -> np.ndarray:
    """One partition's greedy k-center picks (rows of the partition)."""
    from thresher.selection.kcenter import _kcenter

    X, k, costs, budget_cost, metric, block_size, seed = job
    if len(X) == 0:
        return np.zeros(0, np.int64)
    order, _, _ = _kcenter(X, k, budget_cost, costs, None, metric, block_size, seed)
    return order


def _partition_radius(job, centers: np.ndarray) -> float:
    """The largest distance from a row of the partition to its nearest center."""
    X, metric = job
    if len(X) == 0 or len(centers) == 0:
        return 0.0 if len(X) == 0 else float("inf")
    both = np.concatenate([X, centers])
    sq = np.einsum("ij,ij->i", both, both)
    d2 = np.maximum(min_sqdist(both, sq, np.arange(len(X), len(both)))[:len(X)], 0)
    return float(d2.max() / 2) if metric == "cosine" else float(np.sqrt(d2.max()))


def two_stage_facility(X: np.ndarray, k: int | None, *, partitions: int, budget_cost: float | None,
                       costs: np.ndarray | None, options: dict, rng: np.random.Generator) -> TwoStageResult:
    """GreeDi facility location over `partitions` row ranges of `X` (unit rows);
    `options` are `facility_select`'s (metric, graph, n_neighbors, knn)."""
    from thresher.selection.facility import facility_select

    bounds = partition_bounds(len(X), partitions)
    seeds = rng.integers(0, 2**63 - 1, size=len(bounds))
    executor = current_executor()
    jobs = [(np.ascontiguousarray(X[a:b]), None if k is None else min(k, int(b - a)),
             None if costs is None else costs[a:b], budget_cost, options, int(seed))
            for a, b, seed in zip(bounds[:-1], bounds[1:], seeds)]
    picks = [order + a for order, a in zip(executor.map_shards(_partition_facility, jobs), bounds[:-1])]
    candidates = np.unique(np.concatenate(picks)) if picks else np.zeros(0, np.int64)
    final = facility_select(X[candidates], None if k is None else min(k, len(candidates)), budget_cost=budget_cost,
                            costs=None if costs is None else costs[candidates], random_state=int(seeds[-1]), **options)
    order = candidates[final.order]
    chosen = np.ascontiguousarray(X[order])
    objective = sum(executor.map_shards(_partition_objective, [(np.ascontiguousarray(X[a:b]), options["metric"])
                                                                for a, b in zip(bounds[:-1], bounds[1:])], chosen))
    return TwoStageResult(order, float(objective), float(final.objective), int(len(candidates)))


def _partition_facility(job) -> np.ndarray:
    from thresher.selection.facility import facility_select

    X, k, costs, budget_cost, options, seed = job
    if len(X) == 0:
        return np.zeros(0, np.int64)
    return facility_select(X, k, budget_cost=budget_cost, costs=costs, random_state=seed, **options).order


def _partition_objective(job, chosen: np.ndarray) -> float:
    """Sum over the partition's rows of their similarity to the most similar chosen row."""
    X, metric = job
    if len(X) == 0 or len(chosen) == 0:
        return 0.0
    best = np.full(len(X), -np.inf, dtype=np.float32)
    for a in range(0, len(chosen), 2048):
        np.maximum(best, (X @ chosen[a:a + 2048].T).max(axis=1), out=best)
    sim = best.astype(np.float64) ** 2 if metric == "squared_cosine" else np.maximum(best, 0).astype(np.float64)
    return float(sim.sum())
