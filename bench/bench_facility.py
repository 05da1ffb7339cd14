"""Facility location: thresher vs apricot, then thresher alone at scale.

    python bench/bench_facility.py --apricot-python /tmp/apricot-venv/bin/python
    python bench/bench_facility.py --n 20000 --k 1000 --big 50000,1000000 --big-k 1000

Data: seeded synthetic "clustered unit vectors" (`clustered_unit_vectors`):
50 topics x 20 subtopics, Zipf-like subtopic sizes, d=256; cosine ~0.73
within a subtopic, ~0.45 within a topic, ~0 across topics.

Every fit runs in its own subprocess (`--child`), so peak memory is that
process's peak RSS (`ru_maxrss`): the table gives it whole and as the rise
during the fits (peak minus the RSS after the data were made and the library
imported). apricot runs with the interpreter given by `--apricot-python` (a
separate venv: numba pins numpy); it is fitted twice because it JIT-compiles
on every fit. Both objectives are recomputed here the same way: the exact
dense f(S) = sum_i max_{j in S} cos^2(i, j) (apricot's metric="cosine" is
cos^2), in float64 sums of float32 similarities.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def clustered_unit_vectors(n: int, d: int = 256, topics: int = 50, subtopics: int = 20, seed: int = 0,
                           noise: float = 0.6) -> np.ndarray:
    """Seeded (n, d) float32 unit rows: topic -> subtopic -> row, each level a noisy copy of the one above."""
    rng = np.random.default_rng(seed)

    def unit(a: np.ndarray) -> np.ndarray:
        return a / np.linalg.norm(a, axis=1, keepdims=True)

    top = unit(rng.standard_normal((topics, d), dtype=np.float32))
    sub = unit(np.repeat(top, subtopics, axis=0) + 0.8 * unit(rng.standard_normal((topics * subtopics, d),
                                                                                 dtype=np.float32)))
    weight = 1.0 / np.arange(1, topics * subtopics + 1) ** 0.5
    rng.shuffle(weight)
    labels = rng.choice(topics * subtopics, size=n, p=weight / weight.sum())
    X = np.empty((n, d), dtype=np.float32)
    for a in range(0, n, 100_000):  # chunks keep the peak near the size of X
        part = rng.standard_normal((min(100_000, n - a), d), dtype=np.float32)
        part *= np.float32(noise / np.sqrt(d))
        part += sub[labels[a:a + len(part)]]
        X[a:a + len(part)] = unit(part)
    return X


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def child(args: argparse.Namespace) -> None:
    """One library, one data set, fitted `--repeats` times; prints a JSON line."""
    X = clustered_unit_vectors(args.n)
    if args.child == "apricot":
        from apricot import FacilityLocationSelection

        def fit() -> tuple[np.ndarray, dict]:
            sel = FacilityLocationSelection(args.k, metric="cosine", optimizer="lazy", verbose=False).fit(X)
            return np.asarray(sel.ranking), {}
    else:
        from thresher.selection.facility import facility_select

        def fit() -> tuple[np.ndarray, dict]:
            res = facility_select(X, args.k, metric="squared_cosine", graph=args.graph, knn=args.knn,
                                  n_neighbors=args.n_neighbors, random_state=0)
            return res.order, {"graph_objective": res.objective, "graph": res.graph, "knn": res.knn,
                               "evaluations": res.evaluations, "seconds": res.seconds}
    base = _rss_mb()
    times, order, info = [], None, {}
    for _ in range(args.repeats):
        t = time.perf_counter()
        order, info = fit()
        times.append(time.perf_counter() - t)
    np.save(args.out, order)
    print(json.dumps({"times": times, "peak_mb": _rss_mb(), "base_mb": base, **info}))


def run_child(python: str, lib: str, n: int, k: int, out: Path, repeats: int, graph: str = "auto",
              knn: str = "auto", n_neighbors: int = 50) -> dict:
    env = dict(os.environ, PYTHONPATH=str(ROOT / "src"))
    cmd = [python, __file__, "--child", lib, "--n", str(n), "--k", str(k), "--out", str(out),
           "--repeats", str(repeats), "--graph", graph, "--knn", knn, "--n-neighbors", str(n_neighbors)]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if proc.returncode:
        return {"error": (proc.stderr.strip().splitlines() or ["failed"])[-1]}
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    result["order"] = np.load(out)
    return result


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=20_000)
    ap.add_argument("--k", type=int, default=1000)
    ap.add_argument("--apricot-python", default="/tmp/apricot-venv/bin/python")
    ap.add_argument("--big", default="50000,1000000", help="sizes for thresher alone ('' to skip)")
    ap.add_argument("--big-k", type=int, default=1000)
    ap.add_argument("--variants", default="exact:50,exact:100,partitioned:100,dense:0",
                    help="extra thresher variants at --n: knn:n_neighbors (knn: exact|partitioned|dense)")
    ap.add_argument("--child", choices=["thresher", "apricot"])
    ap.add_argument("--out", type=Path)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--graph", default="auto")
    ap.add_argument("--knn", default="auto")
    ap.add_argument("--n-neighbors", type=int, default=50)
    args = ap.parse_args()
    if args.child:
        child(args)
        return
    sys.path.insert(0, str(ROOT / "src"))
    from thresher.selection._similarity import coverage

    tmp = Path(os.environ.get("TMPDIR", "/tmp")) / "thresher-bench-facility"
    tmp.mkdir(parents=True, exist_ok=True)
    rows = []
    X = clustered_unit_vectors(args.n)
    runs = [("apricot lazy (dense)", args.apricot_python, "apricot", {})]
    runs.append(("thresher default", sys.executable, "thresher", {}))
    for spec in filter(None, args.variants.split(",")):
        knn, nn = spec.split(":")
        if knn == "dense":
            runs.append(("thresher graph=dense", sys.executable, "thresher", {"graph": "dense"}))
            continue
        runs.append((f"thresher knn={knn} n_neighbors={nn}", sys.executable, "thresher",
                     {"graph": "knn", "knn": knn, "n_neighbors": int(nn)}))
    ref = None
    for label, python, lib, opts in runs:
        r = run_child(python, lib, args.n, args.k, tmp / f"{lib}.npy", args.repeats, **opts)
        if "error" not in r:
            r["objective"] = coverage(X, r["order"], "squared_cosine")
            ref = ref or (r if lib == "apricot" else None)
        rows.append((args.n, args.k, label, r))
    for n in [int(v) for v in args.big.split(",") if v]:
        r = run_child(sys.executable, "thresher", n, args.big_k, tmp / "big.npy", 1)
        if "error" not in r:
            Xb = clustered_unit_vectors(n)
            r["objective"] = coverage(Xb, r["order"], "squared_cosine")
            rand = np.random.default_rng(0).choice(n, args.big_k, replace=False)
            r["random_objective"] = coverage(Xb, rand, "squared_cosine")
            del Xb
        rows.append((n, args.big_k, "thresher default", r))
    _print(rows, ref)


def _print(rows: list, ref: dict | None) -> None:
    head = ("N", "k", "method", "graph", "fit 1 (s)", "fit 2 (s)", "similarity + greedy (s)", "peak RSS MB",
            "fit RSS MB", "objective", "vs apricot", "time x", "memory x")
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    for n, k, label, r in rows:
        if "error" in r:
            print(f"| {n} | {k} | {label} | failed: {r['error'][:80]} |")
            continue
        t = r["times"]
        same = ref is not None and n == rows[0][0]
        graph = r.get("graph", "dense") + (f" ({r['knn']})" if r.get("knn") else "")
        obj = f"{r['objective']:.1f}"
        if "random_objective" in r:
            obj += f" (random k: {r['random_objective']:.1f})"
        split = r.get("seconds")
        cells = [n, k, label, graph, f"{t[0]:.2f}", f"{t[1]:.2f}" if len(t) > 1 else "",
                 f"{split['similarity']:.2f} + {split['greedy']:.2f}" if split else "",
                 f"{r['peak_mb']:.0f}", f"{r['peak_mb'] - r['base_mb']:.0f}", obj,
                 f"{r['objective'] / ref['objective']:.4f}" if same else "",
                 f"{min(ref['times']) / min(t):.1f}" if same else "",
                 f"{ref['peak_mb'] / r['peak_mb']:.1f}" if same else ""]
        print("| " + " | ".join(map(str, cells)) + " |")
    print("\ntime x: apricot's best fit time / this method's best; memory x: apricot's peak RSS / this peak RSS;"
          "\nsimilarity + greedy: the last fit's split between building the similarity (graph) and the greedy.")


if __name__ == "__main__":
    main()
