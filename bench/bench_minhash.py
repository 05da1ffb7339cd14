"""Near-duplicate detection: thresher vs datasketch on real text, same process.

Real rows come from the `evals` wheel's registry data (JSONL chat samples;
`pip download --no-deps evals -d /tmp/mh_dl`). 5% of the pool are planted
near-duplicates: a random row with a few words substituted, deleted or
inserted. Both tools run end to end from raw strings (shingling included):

  thresher:   near_duplicate_clusters(texts)  (signatures, LSH, verification,
              connected components)
  datasketch: word 5-shingles -> MinHash.bulk -> MinHashLSH(threshold=0.8,
              num_perm=128) insert + query (its verification, MinHash.jaccard
              >= 0.8 on the candidates, is timed separately)

Ground truth is the exact Jaccard of the 5-word-shingle sets of the
normalized text. Memory: the timed pass samples RSS every 5 ms (peak minus
the RSS before the call); for thresher a second, untimed pass measures the
tracemalloc peak (Python objects and numpy) plus Arrow's memory-pool peak
(--traced-datasketch does the same for datasketch; slow).

Usage:
  PYTHONPATH=src python bench/bench_minhash.py [--rows 100000] [--wheel PATH]
  PYTHONPATH=src python bench/bench_minhash.py --synthetic 1000000   # RSS only
"""
from __future__ import annotations

import argparse
import gc
import glob
import json
import os
import resource
import threading
import time
import tracemalloc
import zipfile

import numpy as np
import pyarrow as pa

from thresher.features.minhash import connected_components, exact_hash, near_duplicate_clusters, normalize_text

THRESHOLD, NUM_PERM, K = 0.8, 128, 5


# -- data --------------------------------------------------------------------
def _texts_of(record) -> str:
    parts: list[str] = []

    def walk(v) -> None:
        if isinstance(v, str):
            parts.append(v)
        elif isinstance(v, dict) and isinstance(v.get("content"), str):
            parts.append(v["content"])
        elif isinstance(v, list):
            for x in v:
                walk(x)

    if isinstance(record, dict):
        walk(record.get("input"))
        walk(record.get("ideal"))
    return "\n".join(parts).strip()


def load_evals(wheel: str, n: int, per_file: int = 1500) -> tuple[list[str], int]:
    """`n` rows spread round-robin over the wheel's JSONL tasks."""
    z = zipfile.ZipFile(wheel)
    names = sorted(x for x in z.namelist() if x.endswith(".jsonl") and "/registry/data/" in x)
    per_task: list[list[str]] = []
    for name in names:
        rows: list[str] = []
        with z.open(name) as f:
            for line in f:
                try:
                    text = _texts_of(json.loads(line))
                except ValueError:
                    continue
                if text:
                    rows.append(text)
                if len(rows) >= per_file:
                    break
        if rows:
            per_task.append(rows)
    out: list[str] = []
    depth = 0
    while len(out) < n and any(depth < len(r) for r in per_task):
        out.extend(r[depth] for r in per_task if depth < len(r))
        depth += 1
    return out[:n], len(per_task)


def plant(base: list[str], n_copies: int, rng: np.random.Generator) -> tuple[list[str], np.ndarray]:
    """Pool of len(base) rows: base rows plus `n_copies` edited copies of random
    base rows, shuffled; returns (texts, planted pairs (i < j))."""
    keep = len(base) - n_copies
    pool = list(base[:keep])
    vocab = " ".join(base[keep : keep + 2000]).split() or ["x"]
    sources = rng.choice(keep, size=n_copies, replace=False)
    for s in sources:
        words = pool[s].split()
        edits = int(rng.integers(1, len(words) // 40 + 2))
        for _ in range(edits):
            op, pos = rng.integers(3), int(rng.integers(max(len(words), 1)))
            w = vocab[int(rng.integers(len(vocab)))]
            if op == 0 and words:
                words[pos] = w
            elif op == 1 and len(words) > 1:
                del words[pos]
            else:
                words.insert(pos, w)
        pool.append(" ".join(words))
    perm = rng.permutation(len(pool))
    where = np.empty(len(pool), np.int64)
    where[perm] = np.arange(len(pool))
    texts = [pool[i] for i in perm]
    pairs = np.stack([where[sources], where[keep + np.arange(n_copies)]], axis=1)
    return texts, np.sort(pairs, axis=1)


def shingle_sets(texts: list[str]) -> tuple[list[frozenset], np.ndarray]:
    """Truth: 5-word shingles of the normalized text (whole row if shorter),
    and per row the first row with the same normalized text (J = 1)."""
    out = []
    for t in normalize_text(pa.array(texts)).to_pylist():
        w = t.split()
        out.append(frozenset(tuple(w[i : i + K]) for i in range(max(1, len(w) - K + 1))) if w else frozenset())
    h = exact_hash(pa.array(texts)).to_numpy(zero_copy_only=False)
    order = np.argsort(h, kind="stable")
    new = np.concatenate([[True], h[order][1:] != h[order][:-1]])
    canon = np.empty(len(h), np.int64)
    canon[order] = order[np.flatnonzero(new)][np.cumsum(new) - 1]
    return out, canon


def true_jaccard(truth, pairs: np.ndarray) -> np.ndarray:
    """Exact Jaccard per pair, computed once per distinct pair of texts."""
    sets, canon = truth
    n = len(canon)
    a, b = canon[pairs[:, 0]], canon[pairs[:, 1]]
    code = np.minimum(a, b) * n + np.maximum(a, b)
    order = np.argsort(code, kind="stable")
    new = np.concatenate([[True], code[order][1:] != code[order][:-1]]) if len(code) else np.zeros(0, bool)
    distinct = code[order][new]
    j = np.ones(len(distinct))
    for k, c in enumerate(distinct.tolist()):
        x, y = sets[c // n], sets[c % n]
        if c // n != c % n:
            inter = len(x & y)
            union = len(x) + len(y) - inter
            j[k] = inter / union if union else 0.0
    out = np.empty(len(code))
    out[order] = j[np.cumsum(new) - 1]
    return out


# -- measurement --------------------------------------------------------------
def _rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def timed(fn):
    """(result, wall s, cpu s, peak RSS delta bytes) with a 5 ms RSS sampler."""
    base, peak, stop = _rss(), [0], threading.Event()

    def sample() -> None:
        while not stop.is_set():
            peak[0] = max(peak[0], _rss())
            time.sleep(0.005)

    th = threading.Thread(target=sample, daemon=True)
    th.start()
    w, c = time.perf_counter(), time.process_time()
    result = fn()
    wall, cpu = time.perf_counter() - w, time.process_time() - c
    stop.set()
    th.join()
    return result, wall, cpu, max(peak[0], _rss()) - base


def traced_peak(fn) -> int:
    """tracemalloc peak (Python + numpy) + Arrow pool peak growth, in bytes."""
    pool = pa.default_memory_pool()
    arrow_before = pool.max_memory() or 0
    tracemalloc.start()
    fn()
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return peak + max(0, (pool.max_memory() or 0) - arrow_before)


# -- the two tools --------------------------------------------------------------
def run_thresher(texts: list[str]):
    return near_duplicate_clusters(pa.array(texts), NUM_PERM, K, THRESHOLD, seed=1)


def run_datasketch(texts: list[str]):
    """Shingling, MinHash.bulk, MinHashLSH insert + query (results kept as the
    lists query returns)."""
    from datasketch import MinHash, MinHashLSH

    shingles = []
    for t in texts:
        w = t.lower().split()
        shingles.append([" ".join(w[i : i + K]).encode() for i in range(max(1, len(w) - K + 1))] if w else [])
    sigs = MinHash.bulk(shingles, num_perm=NUM_PERM)
    lsh = MinHashLSH(threshold=THRESHOLD, num_perm=NUM_PERM)
    for i, m in enumerate(sigs):
        lsh.insert(i, m)
    return sigs, [lsh.query(m) for m in sigs], lsh


def datasketch_pairs(results: list[list[int]]) -> np.ndarray:
    """Unique candidate pairs (i < j) from per-row query results (not timed)."""
    i = np.repeat(np.arange(len(results)), [len(r) for r in results])
    j = np.fromiter((x for r in results for x in r), dtype=np.int64, count=len(i))
    lo, hi = np.minimum(i, j), np.maximum(i, j)
    code = np.sort((lo * len(results) + hi)[lo != hi])
    code = code[np.concatenate([[True], code[1:] != code[:-1]])] if len(code) else code
    return np.stack([code // len(results), code % len(results)], axis=1)


def datasketch_verify(sigs, pairs: np.ndarray) -> np.ndarray:
    """Candidates whose MinHash.jaccard (fraction of equal values) >= 0.8,
    computed with numpy over the hash values (same result, not timed)."""
    hv = np.stack([m.hashvalues for m in sigs])
    keep = np.zeros(len(pairs), dtype=bool)
    for s in range(0, len(pairs), 100_000):
        p = pairs[s : s + 100_000]
        keep[s : s + 100_000] = (hv[p[:, 0]] == hv[p[:, 1]]).mean(axis=1) >= THRESHOLD
    return pairs[keep]


def same_cluster(cluster: np.ndarray, truth: np.ndarray) -> float:
    return float(np.mean(cluster[truth[:, 0]] == cluster[truth[:, 1]])) if len(truth) else float("nan")


def pair_recall(found: np.ndarray, truth: np.ndarray, n: int) -> float:
    if len(truth) == 0:
        return float("nan")
    codes = set((found[:, 0] * n + found[:, 1]).tolist())
    return float(np.mean([c in codes for c in (truth[:, 0] * n + truth[:, 1]).tolist()]))


def fp_counts(truth, pairs: np.ndarray) -> dict[str, int]:
    j = true_jaccard(truth, pairs)
    return {"pairs": len(pairs), "true_J<0.8": int((j < THRESHOLD).sum()),
            "true_J<0.7": int((j < 0.7).sum()), "true_J<0.65": int((j < THRESHOLD - 0.15).sum())}


# -- main -------------------------------------------------------------------------
def real_text(args) -> None:
    import datasketch

    wheel = args.wheel or next(iter(sorted(glob.glob("/tmp/mh_dl/evals-*.whl"))), None)
    if not wheel:
        raise SystemExit("no evals wheel: pip download --no-deps evals -d /tmp/mh_dl")
    rng = np.random.default_rng(args.seed)
    base, tasks = load_evals(wheel, args.rows)
    texts, planted = plant(base, int(round(args.dup_frac * len(base))), rng)
    n = len(texts)
    truth = shingle_sets(texts)
    pj = true_jaccard(truth, planted)
    hard = planted[pj >= THRESHOLD]
    words = np.mean([len(t.split()) for t in texts])
    print(f"pool: {n} rows from {tasks} evals tasks ({os.path.basename(wheel)}), mean {words:.0f} words/row; "
          f"{len(planted)} planted pairs, {len(hard)} with true J >= {THRESHOLD} "
          f"(planted J quartiles {np.round(np.percentile(pj, [25, 50, 75]), 3).tolist()})")
    print(f"datasketch {datasketch.__version__}, numpy {np.__version__}, pyarrow {pa.__version__}, "
          f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}")

    gc.collect()
    res, wall, cpu, rss = timed(lambda: run_thresher(texts))
    tm = traced_peak(lambda: run_thresher(texts))
    print(f"\nthresher:   {n / wall:,.0f} rows/s wall ({wall:.2f} s; cpu {cpu:.2f} s = {n / cpu:,.0f} rows/s), "
          f"peak RSS delta {rss / 2**20:,.0f} MiB, tracemalloc+arrow peak {tm / 2**20:,.0f} MiB")
    print(f"  bands x rows = {res.bands} x {res.rows}; stats {res.stats}")
    print(f"  recall of planted pairs with J >= {THRESHOLD}: same cluster {same_cluster(res.dup_cluster, hard):.4f}, "
          f"direct verified pair {pair_recall(res.pairs, hard, n):.4f}")
    print(f"  verified pairs vs truth: {fp_counts(truth, res.pairs)}")
    strict = near_duplicate_clusters(pa.array(texts), NUM_PERM, K, THRESHOLD, seed=1, verify_z=0.0)
    print(f"  with verify_z=0 (estimate >= {THRESHOLD}): same cluster {same_cluster(strict.dup_cluster, hard):.4f}, "
          f"direct verified pair {pair_recall(strict.pairs, hard, n):.4f}; verified pairs vs truth: "
          f"{fp_counts(truth, strict.pairs)}")
    if args.skip_datasketch:
        return

    del res
    gc.collect()
    (sigs, results, lsh), dwall, dcpu, drss = timed(lambda: run_datasketch(texts))
    cand = datasketch_pairs(results)
    del results
    ver = datasketch_verify(sigs, cand)
    cluster = connected_components(n, ver)
    print(f"\ndatasketch: {n / dwall:,.0f} rows/s wall ({dwall:.2f} s; cpu {dcpu:.2f} s = {n / dcpu:,.0f} rows/s), "
          f"peak RSS delta {drss / 2**20:,.0f} MiB")
    if args.traced_datasketch:
        del sigs
        gc.collect()
        dtm = traced_peak(lambda: run_datasketch(texts))
        print(f"  tracemalloc peak {dtm / 2**20:,.0f} MiB")
    print(f"  bands x rows = {lsh.b} x {lsh.r}; candidate pairs {len(cand)}, verified (J est >= {THRESHOLD}) {len(ver)}")
    print(f"  recall of planted pairs with J >= {THRESHOLD}: same cluster (verified) {same_cluster(cluster, hard):.4f}, "
          f"candidate pair {pair_recall(cand, hard, n):.4f}, verified pair {pair_recall(ver, hard, n):.4f}")
    print(f"  verified pairs vs truth: {fp_counts(truth, ver)}")
    print(f"\nspeed-up of thresher (end to end, incl. verification + clusters) over datasketch (insert + query): "
          f"wall {dwall / wall:.1f}x, cpu {dcpu / cpu:.1f}x")


def synthetic(args) -> None:
    """Peak RSS of near_duplicate_clusters on `args.synthetic` rows of random
    Zipf-distributed words, 5% of them exact copies of another row."""
    rng = np.random.default_rng(args.seed)
    vocab = np.array([f"w{i}" for i in range(50_000)])
    p = 1.0 / np.arange(1, len(vocab) + 1)
    p /= p.sum()
    chunks = []
    for s in range(0, args.synthetic, 50_000):
        m = min(50_000, args.synthetic - s)
        lengths = rng.integers(10, 150, size=m)
        words = vocab[rng.choice(len(vocab), size=int(lengths.sum()), p=p)]
        cuts = np.cumsum(lengths)[:-1]
        rows = [" ".join(w) for w in np.split(words, cuts)]
        for i, j in zip(rng.choice(m, m // 20, replace=False), rng.choice(m, m // 20)):
            rows[i] = rows[j]  # 5% exact duplicates exercise the LSH and cluster path
        chunks.append(pa.array(rows))
    texts = pa.chunked_array(chunks)
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    res, wall, cpu, rss = timed(lambda: near_duplicate_clusters(texts, NUM_PERM, K, THRESHOLD, seed=1))
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    print(f"synthetic: {args.synthetic:,} rows ({texts.nbytes / 2**20:,.0f} MiB of text), "
          f"{args.synthetic / wall:,.0f} rows/s wall ({wall:.1f} s, cpu {cpu:.1f} s); "
          f"process peak RSS {peak / 2**30:.2f} GiB (before the call {rss0 / 2**30:.2f} GiB), "
          f"sampled RSS delta during the call {rss / 2**30:.2f} GiB")
    print(f"  stats {res.stats}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=100_000)
    ap.add_argument("--dup-frac", type=float, default=0.05)
    ap.add_argument("--wheel", default=os.environ.get("THRESHER_EVALS_WHEEL"))
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--skip-datasketch", action="store_true")
    ap.add_argument("--traced-datasketch", action="store_true", help="also tracemalloc datasketch (slow)")
    ap.add_argument("--synthetic", type=int, default=0, help="rows of synthetic text: peak-RSS run only")
    args = ap.parse_args()
    synthetic(args) if args.synthetic else real_text(args)


if __name__ == "__main__":
    main()
