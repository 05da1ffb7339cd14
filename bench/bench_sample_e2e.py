"""End-to-end `thresher sample` on a 1M-row JSONL vs a bare pyarrow read+write.

    python bench/bench_sample_e2e.py [--rows 1000000] [--repeats 3]

The baseline is the least any tool must do: `pyarrow.json.read_json` of the
file and `pyarrow.parquet.write_table` of it (pyarrow has no JSON writer);
the same with only the 10% subset written is printed too. thresher does more: validates every row, derives ids, draws a
stratified sample with exact allocation, writes JSONL with the original
bytes plus `_pi`/`_weight`, and a manifest. Both run in this process.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from _synth import write_synth_jsonl  # noqa: E402


def bare_pyarrow(path: Path, out: Path, subset_only: bool) -> float:
    """Read the JSONL with pyarrow and write it (all rows, or the 10% subset) as Parquet."""
    import pyarrow as pa
    import pyarrow.json as pj
    import pyarrow.parquet as pq

    t = time.perf_counter()
    table = pj.read_json(path)
    if subset_only:
        idx = np.sort(np.random.default_rng(0).choice(table.num_rows, table.num_rows // 10, replace=False))
        table = table.take(pa.array(idx))
    pq.write_table(table, out)
    return time.perf_counter() - t


def thresher_sample(path: Path, out: Path) -> float:
    from thresher.cli.app import main

    t = time.perf_counter()
    try:
        main(["sample", str(path), "--design", "stratified", "--by", "category", "--fraction", "0.1",
              "--seed", "0", "-o", str(out), "--overwrite", "--quiet"])
    except SystemExit as exit_:
        if exit_.code:
            raise
    return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--data", type=Path, default=Path(tempfile.gettempdir()) / "thresher-bench")
    args = ap.parse_args()
    args.data.mkdir(parents=True, exist_ok=True)
    pool = write_synth_jsonl(args.data / f"pool_{args.rows}.jsonl", args.rows)
    size_mb = pool.stat().st_size / 1e6
    full = min(bare_pyarrow(pool, args.data / "base.parquet", False) for _ in range(args.repeats))
    sub = min(bare_pyarrow(pool, args.data / "base.parquet", True) for _ in range(args.repeats))
    ours = min(thresher_sample(pool, args.data / "picked.jsonl") for _ in range(args.repeats))
    print(f"input: {args.rows:,} rows, {size_mb:.0f} MB JSONL, 50 strata, 10% stratified sample; best of {args.repeats}")
    print(f"{'method':52s} {'seconds':>8s} {'thresher / it':>14s}")
    print(f"{'pyarrow read_json + write_table (the same file)':52s} {full:8.2f} {ours / full:14.2f}")
    print(f"{'pyarrow read_json + take 10% + write_table':52s} {sub:8.2f} {ours / sub:14.2f}")
    print(f"{'thresher sample (validate, ids, sample, jsonl, manifest)':52s} {ours:8.2f}")
    print(f"target: within 2x of a bare pyarrow read+write of the same file -> "
          f"{'MET' if ours <= 2 * full else 'NOT MET'} ({ours / full:.2f}x)")


if __name__ == "__main__":
    main()
