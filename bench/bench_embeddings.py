"""Benchmark: thresher's shipped static embedder vs MiniLM (sentence-transformers).

One process, same texts, same machine. Prints a Markdown report:

* rows/s of `embed(texts, "static")` on all texts (best of `--repeats`),
* rows/s of both models on the same seeded random subset (`--minilm-rows`),
  and their ratio,
* agreement on `--agree-rows` texts: Spearman correlation of all pairwise
  cosines, and how many of each text's 10 MiniLM nearest neighbours are
  among its 10 static nearest neighbours.

Texts: the `instruction` and `output` strings of the bundled demo pool
(examples/demo/pool.jsonl, real rows from chatterbot-corpus and OpenAI evals)
or of any JSONL given with --data (fields chosen with --fields).

    PYTHONPATH=src python bench/bench_embeddings.py
"""
from __future__ import annotations

import argparse
import os
import platform
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pj

from thresher.features.embeddings import embed

ROOT = Path(__file__).resolve().parents[1]


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", type=Path, default=ROOT / "examples" / "demo" / "pool.jsonl")
    p.add_argument("--fields", default="instruction,output", help="comma-separated string fields")
    p.add_argument("--minilm-rows", type=int, default=2000)
    p.add_argument("--agree-rows", type=int, default=1000)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--compare", nargs="*", default=[], metavar="FOLDER",
                   help="other model2vec folders to include in the agreement table")
    return p.parse_args()


def load_texts(path: Path, fields: list[str]) -> pa.Array:
    table = pj.read_json(path)
    cols = [table.column(f).combine_chunks().cast(pa.string()) for f in fields]
    texts = pa.concat_arrays(cols).drop_null()
    return texts.filter(pc.greater(pc.utf8_length(texts), 0))


def rate(texts: pa.Array, model: str, repeats: int) -> tuple[float, float]:
    """(rows per wall second, rows per CPU second of this process), best of
    `repeats`. CPU seconds count every thread, so the second figure does not
    depend on what else the (shared) machine is running."""
    wall = cpu = float("inf")
    for _ in range(repeats):
        w0, c0 = time.perf_counter(), time.process_time()
        embed(texts, model=model)
        wall = min(wall, time.perf_counter() - w0)
        cpu = min(cpu, time.process_time() - c0)
    return len(texts) / wall, len(texts) / cpu


def agreement(texts: pa.Array, model: str, reference: np.ndarray, k: int = 10) -> tuple[float, float]:
    """Spearman of pairwise cosines, and the mean share of each text's k
    nearest neighbours (by `reference`) that `model` also ranks in its top k."""
    from scipy.stats import spearmanr

    a, b = embed(texts, model), reference
    sa, sb = a @ a.T, b @ b.T
    iu = np.triu_indices(len(texts), k=1)
    rho = float(spearmanr(sa[iu], sb[iu]).statistic)
    np.fill_diagonal(sa, -np.inf)
    np.fill_diagonal(sb, -np.inf)
    na, nb = np.argsort(-sa, axis=1)[:, :k], np.argsort(-sb, axis=1)[:, :k]
    overlap = np.mean([len(np.intersect1d(x, y)) / k for x, y in zip(na, nb)])
    return rho, float(overlap)


def main() -> None:
    args = parse_args()
    texts = load_texts(args.data, args.fields.split(","))
    rng = np.random.default_rng(args.seed)
    sub = texts.take(pa.array(rng.choice(len(texts), min(args.minilm_rows, len(texts)), replace=False)))
    agree = texts.take(pa.array(rng.choice(len(texts), min(args.agree_rows, len(texts)), replace=False)))
    lengths = pc.utf8_length(texts).to_numpy()

    load_start = os.getloadavg()[0]
    t0 = time.perf_counter()
    embed(["warm up"], "static")
    load_static = time.perf_counter() - t0
    t0 = time.perf_counter()
    embed(["warm up"], "minilm")
    load_minilm = time.perf_counter() - t0

    static_all = rate(texts, "static", args.repeats)
    static_sub = rate(sub, "static", args.repeats)
    minilm_sub = rate(sub, "minilm", 1)
    reference = embed(agree, "minilm")
    agreements = {m: agreement(agree, m, reference) for m in ["static", *args.compare]}

    import sentence_transformers
    import torch

    print(f"## Embedding benchmark ({time.strftime('%Y-%m-%d')})\n")
    print(f"- machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs "
          f"(load average at start {load_start:.1f}, at end {os.getloadavg()[0]:.1f}); torch {torch.__version__} "
          f"({torch.get_num_threads()} threads), sentence-transformers {sentence_transformers.__version__}")
    print(f"- texts: {len(texts)} strings ({args.fields}) from {args.data.relative_to(ROOT) if args.data.is_relative_to(ROOT) else args.data}; "
          f"chars median {np.median(lengths):.0f}, p90 {np.percentile(lengths, 90):.0f}, max {lengths.max()}")
    print(f"- model load: static {load_static:.2f} s, minilm {load_minilm:.2f} s\n")
    print("| measure | static | minilm | static / minilm |")
    print("|---|---:|---:|---:|")
    print(f"| rows per wall second, all {len(texts)} texts (best of {args.repeats}) | {static_all[0]:,.0f} | | |")
    print(f"| rows per CPU second, all {len(texts)} texts | {static_all[1]:,.0f} | | |")
    print(f"| rows per wall second, same {len(sub)}-text subset | {static_sub[0]:,.0f} | {minilm_sub[0]:,.1f} | "
          f"{static_sub[0] / minilm_sub[0]:,.0f}x |")
    print(f"| rows per CPU second, same {len(sub)}-text subset | {static_sub[1]:,.0f} | {minilm_sub[1]:,.1f} | "
          f"{static_sub[1] / minilm_sub[1]:,.0f}x |")
    print(f"\nAgreement with MiniLM on {len(agree)} texts:\n")
    print("| model | Spearman of pairwise cosines | top-10 neighbours shared |")
    print("|---|---:|---:|")
    for name, (rho, overlap) in agreements.items():
        print(f"| {name} | {rho:.3f} | {overlap:.1%} |")


if __name__ == "__main__":
    main()
