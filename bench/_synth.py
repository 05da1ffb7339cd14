"""Synthetic pools for benchmarks (seeded, realistic-length alpaca rows)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

WORDS = ("the of and to in is you that it he was for on are as with his they at be this have from or one had "
         "by word but not what all were we when your can said there use an each which she do how their if will "
         "up other about out many then them these so some her would make like him into time has look two more "
         "write go see number no way could people my than first water been call who oil its now find long down "
         "day did get come made may part model data train sample answer question explain why list").split()


def synth_rows(n: int, strata: int = 50, seed: int = 0) -> list[dict]:
    rng = np.random.default_rng(seed)
    vocab = np.array(WORDS)
    # Zipf-ish stratum sizes
    weights = 1.0 / np.arange(1, strata + 1) ** 0.8
    cats = rng.choice(strata, size=n, p=weights / weights.sum())
    lens_i = rng.integers(5, 25, size=n)
    lens_o = rng.integers(10, 60, size=n)
    words = vocab[rng.integers(0, len(vocab), size=int(lens_i.sum() + lens_o.sum()))]
    rows, pos = [], 0
    for i in range(n):
        ins = " ".join(words[pos:pos + lens_i[i]]); pos += lens_i[i]
        out = " ".join(words[pos:pos + lens_o[i]]); pos += lens_o[i]
        rows.append({"instruction": ins, "input": "", "output": out, "category": f"cat{cats[i]:02d}",
                     "score": float(rng.gamma(2.0, 1.0))})
    return rows


def write_synth_jsonl(path: Path, n: int, strata: int = 50, seed: int = 0) -> Path:
    if path.exists():
        return path
    rows = synth_rows(n, strata, seed)
    tmp = path.with_suffix(".tmp")
    with tmp.open("w") as f:
        for r in rows:
            f.write(json.dumps(r) + "\n")
    tmp.rename(path)
    return path
