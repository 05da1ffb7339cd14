"""Build a held-out-style topic-classification pool for the evaluation benchmark.

The shape of a real user task nobody here wrote: ~1,900 Alpaca rows whose
inputs are long passages (median ~300 tokens), five topic labels, the
instruction *before* the passage, and a separate 100-row eval file. The
passages are real text from five tasks of OpenAI's `evals` wheel (MIT):
US tort law questions, LogiQA passages, fables, JEE maths problems and
backgammon positions; the label is the source task.

    pip download --no-deps evals==3.0.1.post1 -d /tmp/demo_src
    python bench/make_topic_pool.py --wheel /tmp/demo_src/evals-3.0.1.post1-py3-none-any.whl --out out/topic
"""
from __future__ import annotations

import argparse
import json
import zipfile
from pathlib import Path

import numpy as np

SOURCES = {  # label -> file inside the wheel's registry/data
    "law": "us_tort_law/samples.jsonl",
    "logic": "logiqa/logiqa.jsonl",
    "fable": "parable-to-moral-match/parable-to-moral-match-en.jsonl",
    "math": "jee-math/samples.jsonl",
    "games": "backgammon/backgammon-illegal-move.jsonl",
}
INSTRUCTION = ("Classify the topic of the text below. Answer with one word: "
               "law, logic, fable, math or games.")
PER_CLASS = 400
MAX_CHARS = 1800  # ~400 tokens at most; most passages are shorter


def passages(wheel: zipfile.ZipFile, member: str) -> list[str]:
    out = []
    for line in wheel.read(f"evals/registry/data/{member}").decode("utf-8").splitlines():
        if not line.strip():
            continue
        turns = json.loads(line)["input"]
        text = "\n".join(t["content"].strip() for t in turns if t.get("role") == "user").strip()
        if len(text) > MAX_CHARS:
            text = text[:MAX_CHARS].rsplit(" ", 1)[0]
        if text:
            out.append(text)
    return sorted(set(out))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--wheel", required=True)
    ap.add_argument("--out", default="out/topic")
    ap.add_argument("--eval-rows", type=int, default=100)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    rng = np.random.default_rng(args.seed)
    rows = []
    with zipfile.ZipFile(args.wheel) as wheel:
        for label, member in SOURCES.items():
            texts = passages(wheel, member)
            pick = rng.permutation(len(texts))[:PER_CLASS]
            rows += [{"instruction": INSTRUCTION, "input": texts[i], "output": label, "category": label}
                     for i in sorted(pick)]
    order = rng.permutation(len(rows))
    rows = [dict(r, id=f"t{k:05d}") for k, r in enumerate(rows[i] for i in order)]
    labels = np.array([r["category"] for r in rows])
    per = args.eval_rows // len(SOURCES)
    eval_idx = np.concatenate([np.flatnonzero(labels == lab)[:per] for lab in SOURCES])
    held = set(eval_idx.tolist())
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    write = lambda path, items: path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in items))  # noqa: E731
    write(out / "pool.jsonl", [r for k, r in enumerate(rows) if k not in held])
    write(out / "eval.jsonl", [rows[k] for k in sorted(held)])
    print(f"{out}/pool.jsonl: {len(rows) - len(held)} rows; {out}/eval.jsonl: {len(held)} rows")


if __name__ == "__main__":
    main()
