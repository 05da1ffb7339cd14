"""Two-stage diversity selection (`partitions`) vs the one-machine greedy, in
this process and on Ray, same matrix.

    python bench/bench_two_stage.py                    # k-center N=200k, facility N=100k, d=256, k=1000, P=8

k-center: the exact farthest-point greedy (`kcenter_greedy`, 2x optimal)
against the two-round algorithm (each of P row ranges picks k centers, the
greedy picks k among the P*k; 4x optimal): wall time and the covering
radius over every row. Facility location: the one-machine lazy greedy on
the partitioned kNN graph against GreeDi (P partitions, then the greedy on
the union): wall time and the exact objective sum_i max_j cos^2 over every
row, for both. The two-stage runs go once in this process and once on a
local Ray (`--num-cpus`); their picks must be identical.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "bench"))
from bench_facility import clustered_unit_vectors  # noqa: E402


def timed(fn):
    t = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t


def three_runs(make_step, X, k, partitions, ray_executor):
    """(greedy, two-stage here, two-stage on Ray), each as (Selection, seconds)."""
    from thresher.features.execution import use_executor

    pool = _pool(len(X))
    greedy = timed(lambda: make_step(None).select(pool, k, {"embedding": X}))
    here = timed(lambda: make_step(partitions).select(pool, k, {"embedding": X}))
    with use_executor(ray_executor):
        remote = timed(lambda: make_step(partitions).select(pool, k, {"embedding": X}))
    return greedy, here, remote


def run_kcenter(X, k, partitions, ray_executor) -> None:
    from thresher.selection.kcenter import KCenterSelector, partition_radius

    (exact, t_exact), (split, t_split), (remote, t_ray) = three_runs(
        lambda p: KCenterSelector(partitions=p, random_state=0), X, k, partitions, ray_executor)
    exact_radius = partition_radius(X, X[exact.indices], ("cosine", 64))
    r = split.diagnostics["covering_radius"]
    print(f"k-center N={len(X):,} k={k}: exact greedy {t_exact:.1f} s, radius {exact_radius:.4f} | "
          f"two-stage P={partitions} here {t_split:.1f} s, on Ray {t_ray:.1f} s, radius {r:.4f} "
          f"({r / exact_radius:.3f}x the greedy's) | same picks on Ray: "
          f"{np.array_equal(remote.indices, split.indices)}", flush=True)


def run_facility(X, k, partitions, ray_executor) -> None:
    from thresher.selection.facility import FacilityLocationSelector, partition_objective

    (one, t_one), (split, t_split), (remote, t_ray) = three_runs(
        lambda p: FacilityLocationSelector(partitions=p, random_state=0), X, k, partitions, ray_executor)
    one_obj = partition_objective(X, np.ascontiguousarray(X[one.indices]), {"metric": "squared_cosine"})
    obj = split.diagnostics["pool_objective"]
    print(f"facility N={len(X):,} k={k}: one-machine greedy ({one.diagnostics['graph']}) {t_one:.1f} s, "
          f"objective {one_obj:.1f} | GreeDi P={partitions} here {t_split:.1f} s, on Ray {t_ray:.1f} s, "
          f"objective {obj:.1f} ({obj / one_obj:.4f}x) | same picks on Ray: "
          f"{np.array_equal(remote.indices, split.indices)}", flush=True)


def _pool(n: int):
    import pyarrow as pa

    from thresher.data.dataset import Dataset

    return Dataset.from_table(pa.table({"row": np.arange(n)}))


def main() -> None:
    from thresher.pipeline.executors import make_executor

    ap = argparse.ArgumentParser()
    ap.add_argument("--kcenter-n", type=int, default=200_000)
    ap.add_argument("--facility-n", type=int, default=100_000)
    ap.add_argument("--d", type=int, default=256)
    ap.add_argument("--k", type=int, default=1000)
    ap.add_argument("--partitions", type=int, default=8)
    ap.add_argument("--num-cpus", type=int, default=2)
    args = ap.parse_args()
    ray_executor = make_executor({"name": "ray", "num_cpus": args.num_cpus})
    ray_executor.ray  # noqa: B018 - started before any clock
    run_kcenter(clustered_unit_vectors(args.kcenter_n, args.d), args.k, args.partitions, ray_executor)
    run_facility(clustered_unit_vectors(args.facility_n, args.d), args.k, args.partitions, ray_executor)


if __name__ == "__main__":
    main()
