"""Per-round cost of the active-learning strategies on a large synthetic pool.

Shows time and peak extra memory of one `select` call (batch 20, 500 labeled
rows) per strategy; nothing builds an N x N matrix, so memory grows with N,
not N^2 (an N x N float32 matrix at N=100k would be 40 GB).

    python bench/bench_active.py --n 100000 --dim 256
"""
from __future__ import annotations

import argparse
import time
import tracemalloc

import numpy as np

from thresher.active.strategies import make_strategy


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=100_000)
    ap.add_argument("--dim", type=int, default=256)
    ap.add_argument("--classes", type=int, default=32)
    ap.add_argument("--labeled", type=int, default=500)
    ap.add_argument("--batch", type=int, default=20)
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    X = rng.normal(size=(args.n, args.dim)).astype(np.float32)
    X /= np.linalg.norm(X, axis=1, keepdims=True)
    labeled = rng.choice(args.n, size=args.labeled, replace=False)
    mask = np.ones(args.n, dtype=bool)
    mask[labeled] = False
    unlabeled = np.flatnonzero(mask)
    proba = rng.dirichlet(np.ones(args.classes), size=len(unlabeled))
    print(f"pool {args.n} x {args.dim}, {args.labeled} labeled, batch {args.batch}, {args.classes} classes "
          f"(X itself: {X.nbytes / 2**20:.0f} MiB)")
    print(f"{'strategy':18s} {'seconds':>8s} {'peak MiB':>9s}")
    for name in ("random", "least-confidence", "margin", "entropy", "kcenter", "hybrid"):
        strategy = make_strategy(name)
        tracemalloc.start()
        t = time.perf_counter()
        strategy.select(args.batch, unlabeled=unlabeled, labeled=labeled, proba=proba, X=X, rng=0)
        elapsed = time.perf_counter() - t
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        print(f"{name:18s} {elapsed:8.3f} {peak / 2**20:9.1f}")


if __name__ == "__main__":
    main()
