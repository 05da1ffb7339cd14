"""The selectors that survive at scale: throughput of `length`, `rds`, and
`dedup --against` (decontamination) with its recall of planted eval overlaps.

    python bench/bench_selectors_scale.py [--rows 100000] [--eval 2000] [--planted 1000]
                                          [--rds-rows 2000] [--peer-rows 10000] [--skip-lm]

- decontamination: a synthetic Alpaca pool (`_synth.synth_rows`) with eval
  questions of 15-40 words planted in it: `--planted` exact copies (half of
  them with changed case and punctuation) and `--planted` lightly edited
  copies (one word replaced or deleted, case / punctuation changed). Recall
  is over planted rows; "false positives" are other pool rows removed.
  Peer: datasketch MinHash + MinHashLSH (same 128 permutations, word
  3-shingles, threshold 0.5) querying each pool row against an LSH index of
  the eval set, plus a Python set for the normalized exact match, on the
  first `--peer-rows` pool rows (it is ~100x slower).
- length: `LengthSelector` on the row budget and on a token budget with
  `fill="skip"`, over cached features, vs pandas `nlargest` / a Python loop.
- rds: `lm_embed` with the bundled SmolLM2 (rows/s on CPU; the embedding is
  the cost), and the round-robin over 1,000 target rows on 100k x 576 vectors.

Wall clock, best of `--repeats` where repeated; the machine is shared.
"""
from __future__ import annotations

import argparse
import re
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "bench"))

from _synth import WORDS, synth_rows  # noqa: E402

from thresher.data.dataset import Dataset  # noqa: E402


def eval_questions(n: int, seed: int) -> list[str]:
    rng = np.random.default_rng(seed)
    vocab = np.array(WORDS)
    return [" ".join(vocab[rng.integers(0, len(vocab), int(rng.integers(15, 41)))]) for _ in range(n)]


def light_edit(text: str, rng: np.random.Generator) -> str:
    words = text.split()
    i = int(rng.integers(len(words)))
    if rng.random() < 0.5:
        words[i] = "zebra"
    else:
        del words[i]
    out = " ".join(words)
    return (out.upper() if rng.random() < 0.2 else out.capitalize()) + rng.choice(["?", "!", ".", " ..."])


def planted_pool(rows: int, n_eval: int, planted: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    pool = synth_rows(rows, seed=seed)
    evals = eval_questions(n_eval, seed + 1)
    which = rng.choice(n_eval, size=2 * planted, replace=False)
    kinds = np.array(["exact"] * planted + ["edited"] * planted)
    texts = [evals[j] if k == "exact" and t % 2 else (evals[j].title() + "?" if k == "exact" else
                                                      light_edit(evals[j], rng))
             for t, (j, k) in enumerate(zip(which, kinds))]
    at = np.sort(rng.choice(rows + len(texts), size=len(texts), replace=False))
    order = rng.permutation(len(texts))
    kind = np.array([""] * (rows + len(texts)), dtype=object)
    out, src = [], iter(pool)
    slots = dict(zip(at.tolist(), order.tolist()))
    for pos in range(rows + len(texts)):
        if pos in slots:
            t = slots[pos]
            out.append({"instruction": texts[t], "input": "", "output": "planted", "category": "planted"})
            kind[pos] = kinds[t]
        else:
            out.append(next(src))
    eval_ds = Dataset.from_records([{"instruction": e, "input": "", "output": "x"} for e in evals])
    return Dataset.from_records(out), eval_ds, kind, evals


def bench_against(args) -> None:
    from thresher.selection.decontaminate import overlap_with

    pool, eval_ds, kind, evals = planted_pool(args.rows, args.eval, args.planted)
    pool.column("prompt"), eval_ds.column("prompt")  # derive canonical columns outside the timing
    best, hits = np.inf, None
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        hits = overlap_with(pool, eval_ds, "prompt", near=True, jaccard=0.5, shingle_size=3)
        best = min(best, time.perf_counter() - t0)
    removed = hits.exact | hits.near
    planted = kind != ""
    print(f"dedup --against: {len(pool):,} pool rows x {len(eval_ds):,} eval rows in {best:.2f} s "
          f"= {len(pool) / best:,.0f} rows/s")
    for k in ("exact", "edited"):
        m = kind == k
        print(f"  recall {k:6s}: {removed[m].sum()}/{m.sum()} = {removed[m].mean():.2%}")
    print(f"  recall all   : {removed[planted].mean():.2%}; false positives: {int((removed & ~planted).sum())} "
          f"of {int((~planted).sum()):,}")
    if args.peer_rows:
        peer_against(pool, evals, kind, args.peer_rows)


def _norm(text: str) -> list[str]:
    return re.sub(r"[^\w\s]", "", text.lower()).split()


def peer_against(pool: Dataset, evals: list[str], kind: np.ndarray, rows: int) -> None:
    try:
        from datasketch import MinHash, MinHashLSH
    except ImportError:
        print("  datasketch not installed (pip install datasketch): peer skipped")
        return

    def sig(words):
        m = MinHash(num_perm=128, seed=1)
        m.update_batch([" ".join(words[i:i + 3]).encode() for i in range(max(1, len(words) - 2))])
        return m

    prompts = pool.column("prompt").to_pylist()[:rows]
    t0 = time.perf_counter()
    lsh = MinHashLSH(threshold=0.5, num_perm=128)
    exact = set()
    for j, e in enumerate(evals):
        words = _norm(e)
        exact.add(" ".join(words))
        if len(words) >= 8:
            lsh.insert(str(j), sig(words))
    found = np.zeros(rows, dtype=bool)
    for i, p in enumerate(prompts):
        words = _norm(p)
        found[i] = " ".join(words) in exact or (len(words) >= 8 and bool(lsh.query(sig(words))))
    took = time.perf_counter() - t0
    planted = kind[:rows] != ""
    print(f"  peer datasketch on the first {rows:,} rows: {took:.2f} s = {rows / took:,.0f} rows/s; "
          f"recall {found[planted].mean():.2%} ({planted.sum()} planted), false positives {int((found & ~planted).sum())}")


def bench_length(args) -> None:
    import pandas as pd

    from thresher.core.budget import Budget
    from thresher.selection.length import LengthSelector

    rng = np.random.default_rng(0)
    n = args.rows * 10
    ds = Dataset.from_table(__import__("pyarrow").table({"x": np.arange(n)}))
    length = rng.integers(1, 2000, n).astype(np.float64)
    feats = {"response_tokens": length, "tokens": length + 20}
    budget = float(feats["tokens"].sum() / 10)
    for label, sel, b in (("rows (n = 10%)", LengthSelector(), n // 10),
                          ("tokens, fill=skip", LengthSelector(fill="skip"), Budget("tokens", budget))):
        t0 = time.perf_counter()
        out = sel.select(ds, b, feats)
        took = time.perf_counter() - t0
        print(f"length {label}: {n:,} rows in {took:.3f} s = {n / took:,.0f} rows/s ({len(out):,} kept)")
    t0 = time.perf_counter()
    pd.Series(length).nlargest(n // 10)
    print(f"  peer pandas nlargest (rows): {time.perf_counter() - t0:.3f} s")
    order = np.argsort(-length, kind="stable")
    t0 = time.perf_counter()
    left, kept = budget, []
    for i in order.tolist():
        c = feats["tokens"][i]
        if c <= left:
            kept.append(i)
            left -= c
    print(f"  peer Python loop (tokens, skip): {time.perf_counter() - t0:.3f} s; same picks: "
          f"{kept == LengthSelector(fill='skip').select(ds, Budget('tokens', budget), feats).indices.tolist()}")


def bench_rds(args) -> None:
    from thresher.selection.rds import round_robin

    rng = np.random.default_rng(0)
    pool = rng.standard_normal((args.rows, 576)).astype(np.float32)
    target = rng.standard_normal((1000, 576)).astype(np.float32)
    t0 = time.perf_counter()
    picks = round_robin(pool, target, args.rows // 10)
    took = time.perf_counter() - t0
    print(f"rds round-robin: {args.rows:,} x 576 pool, 1,000 target rows, {len(picks):,} picks in {took:.2f} s "
          f"= {args.rows / took:,.0f} pool rows/s")
    if args.skip_lm:
        return
    from thresher.features.lm_embed import lm_embed

    rows = synth_rows(args.rds_rows, seed=3)
    texts = [r["instruction"] + "\n\n" + r["output"] for r in rows]
    lm_embed(texts[:8])  # load (and on first use convert) the model outside the timing
    t0 = time.perf_counter()
    emb = lm_embed(texts)
    took = time.perf_counter() - t0
    print(f"rds lm_embed (SmolLM2-135M, CPU): {len(texts):,} rows (~{np.mean([len(t.split()) for t in texts]):.0f} "
          f"words) in {took:.1f} s = {len(texts) / took:,.1f} rows/s; dim {emb.shape[1]}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rows", type=int, default=100_000)
    ap.add_argument("--eval", type=int, default=2000)
    ap.add_argument("--planted", type=int, default=1000)
    ap.add_argument("--rds-rows", type=int, default=2000)
    ap.add_argument("--peer-rows", type=int, default=10_000)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--skip-lm", action="store_true")
    args = ap.parse_args()
    bench_against(args)
    bench_length(args)
    bench_rds(args)


if __name__ == "__main__":
    main()
