"""End-to-end `thresher sample` on a 1M-row JSONL vs a bare pyarrow read+write.

    python bench/bench_sample_e2e.py [--rows 1000000] [--repeats 3]

The baseline is the least any tool must do: `pyarrow.json.read_json` of the
file and `pyarrow.parquet.write_table` of the 10% subset (pyarrow has no
JSON writer). thresher does more: validates every row, derives ids, draws a
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


def bare_pyarrow(path: Path, out: Path) -> float:
    import pyarrow as pa
    import pyarrow.json as pj
    import pyarrow.parquet as pq

    t = time.perf_counter()
    table = pj.read_json(path)
    idx = np.sort(np.random.default_rng(0).choice(table.num_rows, table.num_rows // 10, replace=False))
    pq.write_table(table.take(pa.array(idx)), out)
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
    base = min(bare_pyarrow(pool, args.data / "base.parquet") for _ in range(args.repeats))
    ours = min(thresher_sample(pool, args.data / "picked.jsonl") for _ in range(args.repeats))
    print(f"input: {args.rows:,} rows, {size_mb:.0f} MB JSONL, 50 strata, 10% stratified sample")
    print(f"{'method':44s} {'seconds':>8s} {'ratio':>7s}")
    print(f"{'pyarrow read_json + take + write parquet':44s} {base:8.2f} {1.0:7.2f}")
    print(f"{'thresher sample (validate, ids, jsonl, manifest)':44s} {ours:8.2f} {ours / base:7.2f}")
    print(f"target: thresher within 2x of bare pyarrow -> {'MET' if ours <= 2 * base else 'NOT MET'}")


if __name__ == "__main__":
    main()
