"""Featurize text + quality + exact/near-dup on N synthetic rows: rows/s and peak RSS.

    python bench/bench_featurize.py [--rows 1000000]

Runs in this process with a fresh cache folder; peak RSS is the process's
`ru_maxrss` (the whole process: interpreter, the data, every feature).
"""
from __future__ import annotations

import argparse
import resource
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _synth import write_synth_jsonl  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--data", type=Path, default=Path(tempfile.gettempdir()) / "thresher-bench")
    args = ap.parse_args()
    args.data.mkdir(parents=True, exist_ok=True)
    pool = write_synth_jsonl(args.data / f"pool_{args.rows}.jsonl", args.rows)

    from thresher.data.readers import read_dataset
    from thresher.features.featurize import featurize
    from thresher.features.store import FeatureStore

    t0 = time.perf_counter()
    ds = read_dataset(pool).dataset
    t_read = time.perf_counter() - t0
    print(f"read {len(ds):,} rows in {t_read:.1f} s")
    with tempfile.TemporaryDirectory() as cache:
        store = FeatureStore(cache)
        times = {}
        for name in ("text", "quality", "exact_dup", "near_dup"):
            t = time.perf_counter()
            featurize(ds, [name], store=store)
            times[name] = time.perf_counter() - t
            print(f"{name:10s} {times[name]:7.1f} s  {len(ds) / times[name]:10,.0f} rows/s", flush=True)
        t = time.perf_counter()
        featurize(ds, ["text", "quality", "exact_dup", "near_dup"], store=store)
        hit = time.perf_counter() - t
    total = sum(times.values())
    peak_gb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    print(f"all four: {total:.1f} s = {len(ds) / total:,.0f} rows/s; second run (cache hit): {hit:.2f} s")
    print(f"peak RSS {peak_gb:.2f} GiB (target <= 4 GB) -> {'MET' if peak_gb <= 4 * 1e9 / 2**30 else 'NOT MET'}")


if __name__ == "__main__":
    main()
