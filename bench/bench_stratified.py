"""Stratified sampling of 1M rows over 50 strata: thresher vs pandas vs scikit-learn.

    python bench/bench_stratified.py [--rows 1000000] [--strata 50] [--n 100000] [--repeats 5]

All three run in this process on the same data (Zipf-ish stratum sizes, a
string stratum column like "task_07"; an integer-coded column is timed too).
Each timing is the best of `--repeats` runs (wall clock, and CPU time of this
process, which is steadier on a shared machine) and covers the whole call from
the in-memory table/frame to the selected row positions:

- thresher: `StratifiedSampler(by=["s"], allocation="proportional").select(ds, n)`
  (encodes the strata, exact largest-remainder allocation, SRS per stratum,
  pi and weights per row);
- pandas: `df[["s"]].groupby("s").sample(frac=n/N, random_state=0)` on a
  frame holding only the stratum column (rounds each group's share on its
  own, so the total can miss n);
- scikit-learn: `train_test_split(idx, train_size=n, stratify=s, random_state=0)`.

"exact" says whether each stratum got exactly its largest-remainder share of
n rows (the proportional allocation that sums to n).
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from thresher.data.dataset import Dataset  # noqa: E402
from thresher.sampling.allocation import allocate  # noqa: E402
from thresher.sampling.stratified import StratifiedSampler  # noqa: E402


def make_table(rows: int, strata: int, seed: int = 12345) -> pa.Table:
    rng = np.random.default_rng(seed)
    weights = 1.0 / np.arange(1, strata + 1) ** 0.8
    codes = rng.choice(strata, size=rows, p=weights / weights.sum())
    names = np.array([f"task_{i:02d}" for i in range(strata)])
    return pa.table({"s": pa.array(names[codes]), "s_int": codes.astype(np.int64),
                     "x": rng.normal(size=rows)})


def best_of(fn, repeats: int) -> tuple[float, float, object]:
    """Best wall-clock and best CPU (process) seconds over `repeats` calls, and the last result."""
    wall, cpu, out = float("inf"), float("inf"), None
    for _ in range(repeats):
        t, c = time.perf_counter(), time.process_time()
        out = fn()
        wall, cpu = min(wall, time.perf_counter() - t), min(cpu, time.process_time() - c)
    return wall, cpu, out


def per_stratum(labels: np.ndarray, uniques: np.ndarray) -> np.ndarray:
    return np.searchsorted(uniques, labels)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--strata", type=int, default=50)
    ap.add_argument("--n", type=int, default=100_000)
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()

    import pandas as pd
    import sklearn
    from sklearn.model_selection import train_test_split

    table = make_table(args.rows, args.strata)
    ds = Dataset.from_table(table)
    df = table.to_pandas()
    s_np = np.asarray(table.column("s").to_numpy(zero_copy_only=False)).astype(str)
    s_int = table.column("s_int").to_numpy()
    uniques, sizes = np.unique(s_np, return_counts=True)
    exact = allocate(sizes, args.n, "proportional").counts
    frac = args.n / args.rows

    def check(rows_idx: np.ndarray) -> tuple[int, bool]:
        got = np.bincount(per_stratum(s_np[rows_idx], uniques), minlength=len(uniques))
        return int(len(rows_idx)), bool(np.array_equal(got, exact))

    results = []
    for column, label in (("s", "string strata"), ("s_int", "integer strata")):
        sampler = StratifiedSampler(by=[column], allocation="proportional", random_state=0)
        strat = s_np if column == "s" else s_int
        *t_ours, sel = best_of(lambda sampler=sampler: sampler.select(ds, args.n), args.repeats)
        frame = df[[column]]  # only the stratum column: the least work pandas can do
        *t_pd, sub = best_of(lambda frame=frame, column=column: frame.groupby(column).sample(frac=frac,
                                                                                        random_state=0),
                             args.repeats)
        *t_sk, split = best_of(lambda strat=strat: train_test_split(np.arange(args.rows), train_size=args.n,
                                                                    stratify=strat, random_state=0), args.repeats)
        results.append((label, "thresher StratifiedSampler", *t_ours, *check(sel.indices)))
        results.append((label, "pandas groupby().sample(frac)", *t_pd, *check(sub.index.to_numpy())))
        results.append((label, "sklearn train_test_split(stratify)", *t_sk, *check(np.sort(split[0]))))

    print(f"{args.rows:,} rows, {len(uniques)} strata (sizes {sizes.max():,}..{sizes.min():,}), n = {args.n:,}; "
          f"best of {args.repeats}; numpy {np.__version__}, pandas {pd.__version__}, "
          f"scikit-learn {sklearn.__version__}, pyarrow {pa.__version__}")
    print(f"{'strata column':<15} {'method':<36} {'wall s':>8} {'x ours':>7} {'cpu s':>8} {'x ours':>7} "
          f"{'rows':>8} {'exact':>6}")
    ours = {}
    for label, method, wall, cpu, rows, ok in results:
        if method.startswith("thresher"):
            ours[label] = (wall, cpu)
        print(f"{label:<15} {method:<36} {wall:>8.4f} {wall / ours[label][0]:>6.1f}x {cpu:>8.4f} "
              f"{cpu / ours[label][1]:>6.1f}x {rows:>8,} {'yes' if ok else 'no':>6}")


if __name__ == "__main__":
    main()
