"""A synthetic Alpaca pool for the scale-out benchmark, with planted duplicates.

    python bench/make_scale_pool.py --rows 1000000 --out /tmp/thresher-bench/scale_1000000.jsonl

Rows come in chunks of 200k (bounded memory at any size): 50 Zipf-sized
categories, 5-25 instruction words and 10-60 output words from a 2,000-word
vocabulary; 5% of the rows are exact copies and 5% near copies (one output
word replaced) of an earlier row of the same chunk. Seeded: same bytes every run.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

CHUNK = 200_000


def chunk_rows(rng: np.random.Generator, first_id: int, n: int, vocab: np.ndarray, cat_p: np.ndarray) -> list[str]:
    cats = rng.choice(len(cat_p), size=n, p=cat_p)
    len_i, len_o = rng.integers(5, 26, size=n), rng.integers(10, 61, size=n)
    words = vocab[rng.integers(0, len(vocab), size=int(len_i.sum() + len_o.sum()))]
    ends = np.cumsum(np.stack([len_i, len_o], axis=1).ravel())
    texts = [" ".join(w) for w in np.split(words, ends[:-1])]
    ins, out = texts[0::2], texts[1::2]
    kind = rng.random(n)  # < 0.05: exact copy, < 0.10: near copy of an earlier row
    source = (rng.random(n) * np.arange(n)).astype(np.int64)
    swap_word = vocab[rng.integers(0, len(vocab), size=n)]
    lines = []
    for i in range(n):
        cat = int(cats[i])
        if i > 0 and kind[i] < 0.10:
            j = int(source[i])
            ins[i], cat = ins[j], int(cats[j])
            if kind[i] < 0.05:
                out[i] = out[j]
            else:
                w = out[j].split(" ")
                w[len(w) // 2] = str(swap_word[i])
                out[i] = " ".join(w)
            cats[i] = cat
        lines.append(json.dumps({"id": f"r{first_id + i}", "instruction": ins[i], "input": "", "output": out[i],
                                 "category": f"cat{cat:02d}"}) + "\n")
    return lines


def write_pool(path: Path, rows: int, seed: int = 0) -> Path:
    if path.exists():
        return path
    rng = np.random.default_rng(seed)
    vocab = np.array([f"w{i}" for i in range(2000)])
    weights = 1.0 / np.arange(1, 51) ** 0.8
    tmp = path.with_suffix(".tmp")
    path.parent.mkdir(parents=True, exist_ok=True)
    with tmp.open("w") as f:
        for start in range(0, rows, CHUNK):
            f.writelines(chunk_rows(rng, start, min(CHUNK, rows - start), vocab, weights / weights.sum()))
    tmp.rename(path)
    return path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, required=True)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    print(write_pool(args.out, args.rows, args.seed))


if __name__ == "__main__":
    main()
