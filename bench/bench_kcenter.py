"""Greedy k-center: thresher vs the plain numpy farthest-point loop.

    python bench/bench_kcenter.py                      # N=200k, d=256, k=2000
    python bench/bench_kcenter.py --baseline-picks 200 # time the plain loop on 200 picks, extrapolate

The plain loop is the obvious implementation, on the same float32 matrix:

    d = ((X - X[j]) ** 2).sum(1); mind = np.minimum(mind, d); j = mind.argmax()

Both start from the same (seeded) first row and use Euclidean distances on
the same unit vectors (`bench_facility.clustered_unit_vectors`), so they
should make the same picks; the table says how many of the first picks agree
and compares the covering radii. Both run in this process, one after the other.
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


def plain_loop(X: np.ndarray, first: int, picks: int) -> tuple[list[int], float]:
    """The obvious farthest-point loop; (picks, covering radius after them)."""
    mind = np.full(len(X), np.inf, dtype=np.float32)
    order, j = [], first
    for _ in range(picks):
        order.append(j)
        d = ((X - X[j]) ** 2).sum(1)
        mind = np.minimum(mind, d)
        j = int(mind.argmax())
    return order, float(np.sqrt(mind.max()))


def main() -> None:
    from thresher.selection.kcenter import kcenter_greedy

    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=200_000)
    ap.add_argument("--d", type=int, default=256)
    ap.add_argument("--k", type=int, default=2000)
    ap.add_argument("--baseline-picks", type=int, default=None, help="plain-loop picks to time (default: k)")
    args = ap.parse_args()
    X = clustered_unit_vectors(args.n, args.d)
    t = time.perf_counter()
    order, radii = kcenter_greedy(X, args.k, metric="euclidean", random_state=0)
    ours = time.perf_counter() - t
    picks = min(args.baseline_picks or args.k, args.k)
    t = time.perf_counter()
    ref, ref_radius = plain_loop(X, int(order[0]), picks)
    plain = time.perf_counter() - t
    plain_full = plain * args.k / picks
    same = int(np.argmin(np.append(order[:picks] == np.asarray(ref), False)))
    note = "" if picks == args.k else f" (timed {picks} picks, x{args.k / picks:g})"
    print(f"N={args.n} d={args.d} k={args.k}\n")
    print("| method | time (s) | ms / pick | covering radius | radius vs plain |")
    print("|---|---|---|---|---|")
    print(f"| plain numpy loop{note} | {plain_full:.1f} | {plain_full / args.k * 1e3:.1f} | "
          f"{ref_radius:.6f} (after {picks}) | 1 |")
    print(f"| thresher kcenter_greedy | {ours:.1f} | {ours / args.k * 1e3:.1f} | {radii[-1]:.6f} | "
          f"{radii[picks - 1] / ref_radius:.6f} |")
    print(f"\nspeed-up: {plain_full / ours:.1f}x; identical first picks: {same} of {picks}")


if __name__ == "__main__":
    main()
