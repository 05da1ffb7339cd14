"""DEITA score-first diversity walk: the plain loop vs thresher's blocked walk.

    python bench/bench_deita.py [--rows 100000] [--dim 256] [--clusters 500]
                                [--noise 0.01] [--budget 20000] [--repeats 3]

The pool is the *redundant* regime: `--clusters` tight clusters of
near-duplicates (unit vectors, cosine ~0.97 within a cluster, ~0 across), so
about one row per cluster can be kept, the budget can never be filled and the
walk must scan every row. Scores are uniform; threshold 0.9.

- plain loop: walk rows by score; keep a row if `(kept[:n] @ x).max() < 0.9`
  (one matrix-vector product per row, kept rows in a preallocated buffer);
- thresher: `deita_select` (blocks of candidates, one matrix product per
  block, a witness sketch for redundant rows, exact sequential resolution
  inside each block).

Both run in this process on the same data; each timing is the best of
`--repeats` runs (wall clock, and CPU time of this process). "identical" says
whether both kept exactly the same rows in the same order.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from thresher.selection.deita import deita_select  # noqa: E402


def redundant_pool(rows: int, dim: int, clusters: int, noise: float, seed: int = 0):
    rng = np.random.default_rng(seed)
    centers = rng.standard_normal((clusters, dim)).astype(np.float32)
    centers /= np.linalg.norm(centers, axis=1, keepdims=True)
    emb = centers[rng.integers(0, clusters, rows)] + noise * rng.standard_normal((rows, dim)).astype(np.float32)
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    return np.ascontiguousarray(emb, dtype=np.float32), rng.random(rows)


def plain_loop(emb: np.ndarray, scores: np.ndarray, threshold: float, max_rows: int) -> np.ndarray:
    order = np.argsort(-scores, kind="stable")
    kept = np.empty((min(max_rows, len(emb)), emb.shape[1]), dtype=np.float32)
    n, out = 0, []
    for i in order:
        if n >= max_rows:
            break
        if n and (kept[:n] @ emb[i]).max() >= threshold:
            continue
        kept[n] = emb[i]
        n += 1
        out.append(i)
    return np.asarray(out, dtype=np.int64)


def best_of(fn, repeats: int):
    walls, cpus, out = [], [], None
    for _ in range(repeats):
        w, c = time.perf_counter(), time.process_time()
        out = fn()
        walls.append(time.perf_counter() - w)
        cpus.append(time.process_time() - c)
    return out, min(walls), min(cpus)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=100_000)
    ap.add_argument("--dim", type=int, default=256)
    ap.add_argument("--clusters", type=int, default=500)
    ap.add_argument("--noise", type=float, default=0.01)
    ap.add_argument("--budget", type=int, default=20_000)
    ap.add_argument("--threshold", type=float, default=0.9)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()

    emb, scores = redundant_pool(args.rows, args.dim, args.clusters, args.noise)
    ref, ref_wall, ref_cpu = best_of(lambda: plain_loop(emb, scores, args.threshold, args.budget), args.repeats)
    res, our_wall, our_cpu = best_of(
        lambda: deita_select(emb, scores, args.threshold, max_rows=args.budget), args.repeats)
    identical = bool(np.array_equal(ref, res.indices))

    print(f"pool {args.rows} x {args.dim}, {args.clusters} clusters (noise {args.noise}), "
          f"threshold {args.threshold}, budget {args.budget} rows; best of {args.repeats}")
    print(f"{'method':<12}{'wall s':>9}{'cpu s':>9}{'kept':>7}{'walked':>9}")
    print(f"{'plain loop':<12}{ref_wall:>9.3f}{ref_cpu:>9.3f}{len(ref):>7}{args.rows:>9}")
    print(f"{'thresher':<12}{our_wall:>9.3f}{our_cpu:>9.3f}{len(res.indices):>7}{len(res.walked):>9}")
    print(f"speed-up: {ref_wall / our_wall:.1f}x wall, {ref_cpu / our_cpu:.1f}x cpu; identical picks: {identical}; "
          f"exact re-checks near the threshold: {res.exact_checks}")
    if not identical:
        sys.exit(1)


if __name__ == "__main__":
    main()
