"""Scale-out: featurize + near-dedup + stratified sample, local executor vs Ray, same pool.

    python bench/bench_ray.py --rows 1000000 [--rows 5000000] [--executors local,ray] [--num-cpus 2]

Each (rows, executor) runs in its own subprocess, the same job both times:
read the JSONL pool (with Ray: shard by shard on the workers, only the small
columns come to the driver), featurize `text`, `quality`, `near_dup` (row
featurizers as Ray Data tasks reading their own shard, global MinHash-LSH on
Ray tasks), then the steps `dedup: {kind: near}` -> `sample: {design:
stratified, by: [category], n: 10%}` on the driver, then write the subset
(read back from its shards). The parent polls every process of the job (the driver, and
with Ray its raylet, GCS and workers) with psutil every 0.3 s and prints:
wall time per stage, the driver's peak RSS and PSS, the largest other
process's peak PSS, and the peak of the job's summed PSS (RSS over-counts
Ray's shared-memory object store, which every process that touched it
reports; PSS splits shared pages among the processes that map them). It checks that both
executors select the same ids (a sha256 of them) and prints per-row costs,
the inputs of the 100M-row projection in bench/RESULTS.md.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from make_scale_pool import write_pool  # noqa: E402

FEATURES = ["text", "quality", "near_dup"]


def child(pool: Path, executor: str, num_cpus: int) -> None:
    from thresher.data.output import write_selection
    from thresher.features.execution import use_executor
    from thresher.features.featurize import featurize
    from thresher.features.store import FeatureStore
    from thresher.pipeline.executors import make_executor, read_pool
    from thresher.pipeline.runner import StepSpec, run_steps

    clock = {"start": time.perf_counter()}
    chosen = make_executor({"name": executor, **({"num_cpus": num_cpus} if executor == "ray" else {})})
    if executor == "ray":
        chosen.ray  # noqa: B018 - start the local Ray before the clock's read stage
    clock["startup"] = time.perf_counter()
    with tempfile.TemporaryDirectory() as work, use_executor(chosen):
        ds = read_pool(pool).dataset  # ray: shard by shard on the workers; local: the whole file here
        clock["read"] = time.perf_counter()
        store = FeatureStore(work)
        featurize(ds, FEATURES, store=store)
        clock["featurize"] = time.perf_counter()
        steps = [StepSpec("dedup", {"kind": "near"}),
                 StepSpec("sample", {"design": "stratified", "by": ["category"], "fraction": 0.1})]
        run = run_steps(ds, steps, seed=0, store=store)
        clock["dedup+sample"] = time.perf_counter()
        out = Path(work) / "subset.jsonl"
        write_selection(ds, run.selection, out, command="bench")
        clock["write"] = time.perf_counter()
        out_sha = hashlib.sha256(out.read_bytes()).hexdigest()[:16]
    ids = [str(i) for i in ds.ids_of(run.selection.indices)]
    names = list(clock)
    print(json.dumps({
        "stages": {b: round(clock[b] - clock[a], 2) for a, b in zip(names, names[1:])},
        "pool_class": type(ds).__name__, "kept_after_dedup": run.trace[0]["rows_out"],
        "selected": len(ids), "ids_sha256": hashlib.sha256("\n".join(ids).encode()).hexdigest()[:16],
        "output_sha256": out_sha}))


def _descendants(proc):
    try:
        return [proc] + proc.children(recursive=True)
    except Exception:  # the process ended between two polls
        return [proc]


def watch(pid: int, stop: threading.Event, out: dict) -> None:
    """Peak memory over the job's process tree (incl. Ray's): per process RSS
    (counts the shared object-store pages it touched) and PSS (shared pages
    split among the processes that map them, so the PSS sum is the job's real
    footprint)."""
    import psutil

    root = psutil.Process(pid)
    peak_rss: dict[int, int] = {}
    peak_pss: dict[int, int] = {}
    top_pss_sum = 0
    while not stop.is_set():
        total = 0
        for p in _descendants(root):
            try:
                mem = p.memory_full_info()
            except Exception:
                continue
            total += mem.pss
            peak_rss[p.pid] = max(peak_rss.get(p.pid, 0), mem.rss)
            peak_pss[p.pid] = max(peak_pss.get(p.pid, 0), mem.pss)
        top_pss_sum = max(top_pss_sum, total)
        time.sleep(0.3)
    others = [v for p, v in peak_pss.items() if p != pid]
    out.update(pss_sum_peak_gib=top_pss_sum / 2**30, driver_pss_peak_gib=peak_pss.get(pid, 0) / 2**30,
               driver_rss_peak_gib=peak_rss.get(pid, 0) / 2**30,
               largest_other_pss_gib=max(others, default=0) / 2**30, processes=len(peak_pss))


def run_one(pool: Path, executor: str, num_cpus: int) -> dict:
    t0 = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-W", "ignore", __file__, "--child", executor, "--pool", str(pool),
                             "--num-cpus", str(num_cpus)], stdout=subprocess.PIPE, text=True)
    stop, mem = threading.Event(), {}
    watcher = threading.Thread(target=watch, args=(proc.pid, stop, mem))
    watcher.start()
    stdout, _ = proc.communicate()
    stop.set()
    watcher.join()
    if proc.returncode:
        return {"executor": executor, "error": f"exit {proc.returncode}", "wall_s": time.perf_counter() - t0, **mem}
    result = json.loads(stdout.strip().splitlines()[-1])
    return {"executor": executor, "wall_s": time.perf_counter() - t0, **result, **mem}


def report(rows: int, results: list[dict]) -> None:
    print(f"\n== {rows:,} rows ==")
    for r in results:
        if "error" in r:
            print(f"{r['executor']:6s} FAILED ({r['error']}) after {r['wall_s']:.0f} s; "
                  f"PSS sum peak {r.get('pss_sum_peak_gib', 0):.2f} GiB")
            continue
        stages = "  ".join(f"{k} {v:.1f}s" for k, v in r["stages"].items())
        print(f"{r['executor']:6s} wall {r['wall_s']:7.1f} s | {stages}")
        print(f"       driver peak RSS {r['driver_rss_peak_gib']:.2f} GiB / PSS {r['driver_pss_peak_gib']:.2f} GiB, "
              f"largest other process PSS {r['largest_other_pss_gib']:.2f} GiB, job total (PSS sum) peak "
              f"{r['pss_sum_peak_gib']:.2f} GiB over {r['processes']} processes; "
              f"pool {r['pool_class']}; selected {r['selected']:,} ids sha256 {r['ids_sha256']}, "
              f"subset file sha256 {r['output_sha256']}")
        feat = r["stages"]["featurize"]
        print(f"       featurize {feat / rows * 1e6:.1f} µs/row = {rows / feat:,.0f} rows/s; "
              f"read {r['stages']['read'] / rows * 1e6:.1f} µs/row; dedup+sample "
              f"{r['stages']['dedup+sample'] / rows * 1e6:.2f} µs/row")
    ok = [r for r in results if "error" not in r]
    if len(ok) == 2:
        same = ok[0]["ids_sha256"] == ok[1]["ids_sha256"]
        same_file = ok[0]["output_sha256"] == ok[1]["output_sha256"]
        print(f"same selected ids: {same}; same subset bytes: {same_file}; featurize local/ray = "
              f"{ok[0]['stages']['featurize'] / ok[1]['stages']['featurize']:.2f}x; wall local/ray = "
              f"{ok[0]['wall_s'] / ok[1]['wall_s']:.2f}x")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, action="append")
    ap.add_argument("--executors", default="local,ray")
    ap.add_argument("--num-cpus", type=int, default=2)
    ap.add_argument("--data", type=Path, default=Path(tempfile.gettempdir()) / "thresher-bench")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--pool", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        return child(args.pool, args.child, args.num_cpus)
    for rows in args.rows or [1_000_000]:
        t = time.perf_counter()
        pool = write_pool(args.data / f"scale_{rows}.jsonl", rows)
        print(f"pool {pool} ({pool.stat().st_size / 2**20:,.0f} MiB) ready in {time.perf_counter() - t:.0f} s",
              flush=True)
        results = []
        for name in args.executors.split(","):
            results.append(run_one(pool, name, args.num_cpus))
            print(json.dumps(results[-1]), flush=True)
        report(rows, results)


if __name__ == "__main__":
    main()
