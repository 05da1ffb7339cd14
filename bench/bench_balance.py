"""Random over-/under-sampling of 1M rows: thresher vs imbalanced-learn, side by side.

    python bench/bench_balance.py [--rows 1000000] [--classes 20] [--repeats 5] [--e2e]

Labels: `--classes` integer classes with Zipf sizes (N_c ~ 1/c). Both tools
do the same job, from the label array to the output row positions, and must
give every class exactly the same count:

- thresher: `thresher.balance.resample.resample(y, strategy, seed=0)`
  (encodes the labels, computes the targets, draws the rows; also returns
  each row's copy number);
- imbalanced-learn: `RandomUnderSampler` / `RandomOverSampler` with
  `sampling_strategy={class: target}` (thresher's targets, computed outside
  the timing) on X = the (N, 1) array of row positions, so `X_res[:, 0]`
  are the positions; hybrid = under-sampler then over-sampler.

Each timing is the median of `--repeats` runs, the two tools interleaved (the
machine is shared; medians damp the noise). `--e2e` also times the whole
`thresher balance` command on a 1M-row alpaca JSONL (read, balance, write
subset + manifest) in a subprocess, then, in this process, the read once
and per strategy the balance step and the write separately.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from thresher.balance.resample import resample, target_counts  # noqa: E402

CASES = [("undersample", {}), ("oversample", {}), ("hybrid", {}), ("undersample", {"target_ratio": 0.5}),
         ("oversample", {"target_ratio": 0.5})]


def zipf_labels(rows: int, classes: int, seed: int = 12345) -> np.ndarray:
    p = 1.0 / np.arange(1, classes + 1)
    return np.random.default_rng(seed).choice(classes, size=rows, p=p / p.sum())


def imblearn_run(X: np.ndarray, y: np.ndarray, counts: np.ndarray, targets: np.ndarray) -> np.ndarray:
    from imblearn.over_sampling import RandomOverSampler
    from imblearn.under_sampling import RandomUnderSampler

    cut = {c: int(t) for c, (t, n) in enumerate(zip(targets, counts)) if t < n}
    raise_ = {c: int(t) for c, (t, n) in enumerate(zip(targets, counts)) if t > n}
    if cut:
        X, y = RandomUnderSampler(sampling_strategy=cut, random_state=0).fit_resample(X, y)
    if raise_:
        X, y = RandomOverSampler(sampling_strategy=raise_, random_state=0).fit_resample(X, y)
    return X[:, 0]


def bench_core(rows: int, classes: int, repeats: int) -> list[dict]:
    y = zipf_labels(rows, classes)
    X = np.arange(rows, dtype=np.int64).reshape(-1, 1)
    counts = np.bincount(y, minlength=classes)
    print(f"{rows:,} rows, {classes} classes, sizes {counts.max():,} .. {counts.min():,}; "
          f"median of {repeats} runs, interleaved")
    results = []
    for strategy, kw in CASES:
        targets = target_counts(counts, strategy, **kw)
        t_ours, t_imb = [], []
        for _ in range(repeats):
            t = time.perf_counter()
            idx, _copy = resample(y, strategy, seed=0, **kw)
            t_ours.append(time.perf_counter() - t)
            t = time.perf_counter()
            ref = imblearn_run(X, y, counts, targets)
            t_imb.append(time.perf_counter() - t)
        agree = (np.array_equal(np.bincount(y[idx], minlength=classes), targets)
                 and np.array_equal(np.bincount(y[ref], minlength=classes), targets))
        r = {"case": strategy + "".join(f" {k}={v}" for k, v in kw.items()), "out_rows": int(targets.sum()),
             "thresher_s": float(np.median(t_ours)), "imblearn_s": float(np.median(t_imb)), "counts_agree": agree}
        r["speedup"] = r["imblearn_s"] / r["thresher_s"]
        results.append(r)
        print(f"  {r['case']:<32} out {r['out_rows']:>9,}  thresher {r['thresher_s']:.3f} s  "
              f"imblearn {r['imblearn_s']:.3f} s  x{r['speedup']:.1f}  counts agree: {agree}")
    return results


SHIM = ("import sys; from thresher.cli import app as A, balance as B; r = A._register\n"
        "def reg():\n    r()\n    if not any(c.name == 'balance' for c in A.app.registered_commands): B.register(A.app)\n"
        "A._register = reg; A.main(sys.argv[1:])")


def bench_e2e(rows: int, classes: int) -> list[dict]:
    sys.path.insert(0, str(ROOT / "bench"))
    from _synth import write_synth_jsonl

    work = Path(tempfile.gettempdir()) / "thresher_bench_balance"
    work.mkdir(exist_ok=True)
    pool = write_synth_jsonl(work / f"pool_{rows}_{classes}.jsonl", rows, strata=classes, seed=0)
    print(f"end to end: {pool} ({pool.stat().st_size / 1e6:.0f} MB)")
    out = []
    for strategy, extra in (("undersample", []), ("hybrid", []), ("weights", []),
                            ("oversample", ["--target-ratio", "0.2"])):
        target = work / f"out_{strategy}.jsonl"
        cmd = [sys.executable, "-c", SHIM, "balance", str(pool), "--by", "category", "--strategy", strategy,
               *extra, "-o", str(target), "--overwrite", "--quiet"]
        t = time.perf_counter()
        subprocess.run(cmd, check=True, env={**os.environ, "PYTHONPATH": str(ROOT / "src")})
        wall = time.perf_counter() - t
        n_out = sum(1 for _ in target.open("rb"))
        out.append({"strategy": " ".join([strategy, *extra]), "wall_s": wall, "out_rows": n_out})
        print(f"  thresher balance --strategy {' '.join([strategy, *extra]):<28} {wall:6.1f} s  -> {n_out:,} rows")
    return out


def bench_breakdown(rows: int, classes: int) -> list[dict]:
    """In one process: read once, then per strategy the balance step and the write (subset + manifest)."""
    from thresher.api import read
    from thresher.balance.resample import Balance, write_balance

    work = Path(tempfile.gettempdir()) / "thresher_bench_balance"
    pool_path = work / f"pool_{rows}_{classes}.jsonl"
    t = time.perf_counter()
    pool = read(pool_path)
    print(f"breakdown (in process): read {len(pool):,} rows {time.perf_counter() - t:.1f} s")
    out = []
    for strategy, kw in (("undersample", {}), ("hybrid", {}), ("oversample", {"target_ratio": 0.2}),
                         ("weights", {})):
        t = time.perf_counter()
        sel = Balance("category", strategy, random_state=0, **kw).select(pool)
        t_bal = time.perf_counter() - t
        t = time.perf_counter()
        write_balance(pool, sel, work / f"bd_{strategy}.jsonl", overwrite=True)
        t_write = time.perf_counter() - t
        out.append({"strategy": strategy, "balance_s": t_bal, "write_s": t_write, "out_rows": len(sel)})
        print(f"  {strategy:<12} {' '.join(f'{k}={v}' for k, v in kw.items()):<16} balance {t_bal:5.2f} s   "
              f"write subset + manifest {t_write:5.1f} s   -> {len(sel):,} rows")
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--classes", type=int, default=20)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--e2e", action="store_true", help="also time the CLI on a 1M-row JSONL")
    args = ap.parse_args()
    bench_core(args.rows, args.classes, args.repeats)
    if args.e2e:
        bench_e2e(args.rows, args.classes)
        bench_breakdown(args.rows, args.classes)


if __name__ == "__main__":
    main()
