"""Target matching: pick the pool rows that look like a small target set.

* ``method="dsir"`` — data selection with importance resampling (Xie et al.
  2023, "Data Selection for Language Models via Importance Resampling").
  Each text becomes counts of hashed word n-grams (orders 1..`ngram`,
  `num_buckets` buckets); a bag-of-n-grams model with add-one smoothing is
  fitted on the target and on the raw pool; a row's log importance weight is
  Σ_buckets count·(log p_target − log p_pool). k rows are drawn without
  replacement, with probability ∝ w^(1/temperature) at each draw, by
  Gumbel-top-k on log w / temperature. The inclusion probabilities of that
  successive-sampling design have no closed form (their exact value sums
  over all draw orders), so `pi` and `weights` are NaN.
* ``method="embedding"`` — rank pool rows by cosine similarity to the
  target's embeddings: the mean of a row's `top_k` largest similarities to
  target rows (`top_k=1`: the nearest target row). Deterministic.

Texts are normalised as for MinHash (lowercase, punctuation removed,
whitespace runs collapsed) and hashed with the project's stable 64-bit word
hash over the Arrow buffers. That is why this does not use scikit-learn's
HashingVectorizer: scikit-learn is not a runtime dependency, the counts feed
a linear score (one `bincount` per chunk, no sparse matrix needed), and the
buckets stay identical across platforms and releases.

A row's text is its prompt, a newline and its response.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from thresher.core.budget import Budget
from thresher.core.selection import Selection
from thresher.data.dataset import Dataset
from thresher.errors import UsageError
from thresher.features._hashing import as_string_array, fmix64, hash_spans, normalize_buffers, tokenize
from thresher.sampling._common import (Design, check_choice, check_field_name, check_int, check_number,
                                       check_random_state)
from thresher.selection.base import budget_limits, deterministic, embedding_matrix

METHODS = ("dsir", "embedding")
_EMBEDDING_COLUMNS = {"static": "embedding", "minilm": "embedding_minilm"}  # as thresher.features.registry
_CHUNK_ROWS = 1 << 16
_KEEP_BYTES = 256 << 20  # n-grams kept between DSIR's two passes
_NGRAM_KEYS = np.random.default_rng(0x0D518).integers(1, 2**63, size=16, dtype=np.uint64) | np.uint64(1)


class TargetSelector(Design):
    """Select the pool rows most like `target` (DSIR importance resampling or
    embedding similarity).

    Parameters
    ----------
    target: a file of examples (any format thresher reads), a list of texts,
        or a Dataset. May be None for method="embedding" with `target_embeddings`.
    method: "dsir" or "embedding".
    ngram: highest n-gram order hashed (2: unigrams and bigrams).
    num_buckets: hash buckets of the n-gram model.
    temperature: DSIR draws ∝ w^(1/temperature); larger flattens toward uniform.
    target_embeddings: (T, d) target embeddings for method="embedding"
        (otherwise the target texts are embedded with `model`).
    top_k: method="embedding" scores a row by the mean of its top_k
        similarities to target rows.
    model: embedding model for target texts (and for the pool when no
        `embedding` feature is given); must match the pool's embeddings.
    embedding: name of the pool embedding feature (default: the column the
        featurizer writes for `model`: "embedding" for static,
        "embedding_minilm" for minilm).
    random_state: seed of the Gumbel noise (DSIR).
    """

    name = "target"
    needs_budget = True

    def __init__(self, target: str | Path | Sequence[str] | Dataset | None = None, method: str = "dsir",
                 ngram: int = 2, num_buckets: int = 10000, temperature: float = 1.0,
                 target_embeddings: np.ndarray | None = None, top_k: int = 1, model: str = "static",
                 embedding: str | None = None, random_state: int | np.random.Generator | None = None):
        self.target = target
        self.method = method
        self.ngram = ngram
        self.num_buckets = num_buckets
        self.temperature = temperature
        self.target_embeddings = target_embeddings
        self.top_k = top_k
        self.model = model
        self.embedding = embedding
        self.random_state = random_state
        check_choice("method", method, METHODS)
        check_int("ngram", ngram, 1)
        if ngram > len(_NGRAM_KEYS):
            raise UsageError(f"ngram must be <= {len(_NGRAM_KEYS)}, got {ngram}")
        check_int("num_buckets", num_buckets, 2)
        check_number("temperature", temperature, 0.0, low_open=True)
        check_int("top_k", top_k, 1)
        check_field_name("model", model)
        check_field_name("embedding", embedding, allow_none=True)
        check_random_state(random_state)
        _check_target(target, method, target_embeddings)

    @property
    def embedding_feature(self) -> str:
        """The pool embedding feature: `embedding`, else the featurizer's column for `model`."""
        return self.embedding or _EMBEDDING_COLUMNS.get(self.model, "embedding_custom")

    @property
    def requires(self) -> list[str]:
        return ([self.embedding_feature] if self.method == "embedding" else []) + ["tokens"]

    def get_params(self) -> dict[str, Any]:
        params = super().get_params()
        params["target"] = _describe_target(self.target)
        emb = self.target_embeddings
        params["target_embeddings"] = None if emb is None else f"array{tuple(np.shape(emb))}"
        return params

    def select(self, ds: Dataset, budget: int | Budget,
               features: dict[str, np.ndarray] | None = None) -> Selection:
        """Rank or draw pool rows toward the target; indices in rank / draw order."""
        max_rows, tokens, max_tokens = budget_limits(budget, ds, features)
        if self.method == "dsir":
            return self._dsir(ds, max_rows, tokens, max_tokens)
        return self._embedding(ds, features, max_rows, tokens, max_tokens)

    # -- DSIR ------------------------------------------------------------------
    def _dsir(self, ds: Dataset, max_rows: int | None, tokens: np.ndarray | None,
              max_tokens: float | None) -> Selection:
        pool_texts = row_texts(ds)
        target_texts = as_string_array(target_texts_of(self.target))
        log_w, model = dsir_log_weights(pool_texts, target_texts, self.ngram, self.num_buckets)
        rng = self._rng()
        order = gumbel_top_k(log_w / float(self.temperature), len(log_w) if max_rows is None else max_rows, rng)
        picks = take_prefix(order, max_rows, tokens, max_tokens)
        kl_sel = ngram_kl(model, pool_texts.take(pa.array(picks)), self.ngram, self.num_buckets)
        nan = np.full(len(picks), np.nan)
        diagnostics = {
            "target_rows": len(target_texts), "log_weight_pool": _quantiles(log_w),
            "log_weight_selected": _quantiles(log_w[picks]), "ess_fraction": _ess_fraction(log_w),
            "kl_target_pool": model.kl_pool, "kl_target_selected": kl_sel,
            "kl_reduction": model.kl_pool - kl_sel,
            "pi_note": "successive-sampling inclusion probabilities have no closed form; pi is NaN",
        }
        if max_tokens is not None:
            diagnostics["tokens_used"] = float(tokens[picks].sum())
        sel = Selection(picks, nan, nan, "target", self.get_params(), self._seed(), len(ds),
                        diagnostics=diagnostics)
        rest = np.setdiff1d(np.arange(len(ds)), picks)
        sel.removed = {"not drawn by importance resampling toward the target": rest} if len(rest) else {}
        return sel

    # -- embedding similarity -----------------------------------------------------
    def _embedding(self, ds: Dataset, features: dict[str, np.ndarray] | None, max_rows: int | None,
                   tokens: np.ndarray | None, max_tokens: float | None) -> Selection:
        pool = self._pool_embeddings(ds, features)
        target = self._target_embeddings(pool.shape[1])
        score = target_similarity(pool, target, int(self.top_k))
        order = np.argsort(-score, kind="stable")
        picks = take_prefix(order, max_rows, tokens, max_tokens)
        diagnostics = {"target_rows": len(target), "similarity_pool": _quantiles(score),
                       "similarity_selected": _quantiles(score[picks]), "top_k": int(self.top_k)}
        if max_tokens is not None:
            diagnostics["tokens_used"] = float(tokens[picks].sum())
        rest = np.setdiff1d(np.arange(len(ds)), picks)
        removed = {"less similar to the target than the budget's cut": rest} if len(rest) else {}
        return deterministic(picks, method="target", params=self.get_params(), seed=self._seed(),
                             pool_size=len(ds), diagnostics=diagnostics, removed=removed)

    def _pool_embeddings(self, ds: Dataset, features: dict[str, np.ndarray] | None) -> np.ndarray:
        name = self.embedding_feature
        if (features is not None and name in features) or name in ds.fields:
            return embedding_matrix(ds, features, name)
        return _embed(ds, self.model)

    def _target_embeddings(self, dim: int) -> np.ndarray:
        if self.target_embeddings is not None:
            emb = np.asarray(self.target_embeddings, dtype=np.float32)
        elif isinstance(self.target, (str, Path, Dataset)):
            emb = _embed(_as_dataset(self.target), self.model)
        else:
            from thresher.features.embeddings import embed

            emb = embed(list(self.target), model=self.model)
        if emb.ndim != 2 or emb.shape[1] != dim or len(emb) == 0:
            raise UsageError(f"target embeddings must have shape (rows >= 1, {dim}) to match the pool's; "
                             f"got {emb.shape}")
        return emb


# -- pure functions ------------------------------------------------------------
class _Model:
    """The fitted bag-of-hashed-n-grams pair: log p_target - log p_pool per
    bucket, and what KL(target || .) needs."""

    def __init__(self, target_counts: np.ndarray, pool_counts: np.ndarray):
        self.log_pt = np.log((target_counts + 1.0) / (target_counts.sum() + len(target_counts)))
        log_pp = np.log((pool_counts + 1.0) / (pool_counts.sum() + len(pool_counts)))
        self.log_ratio = self.log_pt - log_pp
        self.kl_pool = float(np.exp(self.log_pt) @ self.log_ratio)


def row_texts(ds: Dataset) -> pa.Array:
    """prompt + "\\n" + response of every row (nulls as empty)."""
    prompt = pc.fill_null(_array(ds.column("prompt")), "")
    response = pc.fill_null(_array(ds.column("response")), "")
    return pc.binary_join_element_wise(prompt.cast(pa.string()), response.cast(pa.string()), "\n")


def hashed_ngrams(texts: pa.Array, ngram: int, num_buckets: int) -> tuple[np.ndarray, np.ndarray]:
    """(row, bucket) of every word n-gram of orders 1..ngram in `texts`."""
    data, offsets = normalize_buffers(as_string_array(texts))
    starts, lengths, counts = tokenize(data, offsets)
    words = hash_spans(data, starts, lengths)
    row = np.repeat(np.arange(len(counts), dtype=np.int64), counts)
    left = np.repeat(np.cumsum(counts), counts) - np.arange(len(words))  # words from here to the row's end
    rows, hashes = [row], [words]
    acc = words * _NGRAM_KEYS[0]
    for k in range(2, ngram + 1):
        acc[: len(words) - k + 1] += words[k - 1:] * _NGRAM_KEYS[k - 1]
        ok = np.flatnonzero(left >= k)  # k words of the same row start here
        rows.append(row[ok])
        hashes.append(fmix64(acc[ok] ^ np.uint64(k)))
    # Lemire's multiply-shift maps the top 32 hash bits onto [0, num_buckets) without a division.
    top = np.concatenate(hashes) >> np.uint64(32)
    return np.concatenate(rows), ((top * np.uint64(num_buckets)) >> np.uint64(32)).astype(np.int64)


def _chunks(texts: pa.Array, ngram: int, num_buckets: int):
    """(first row, rows, row of each n-gram, bucket) per chunk of `texts`."""
    for start in range(0, len(texts), _CHUNK_ROWS):
        part = texts.slice(start, _CHUNK_ROWS)
        rows, buckets = hashed_ngrams(part, ngram, num_buckets)
        yield start, len(part), rows, buckets


def ngram_counts(texts: pa.Array, ngram: int, num_buckets: int) -> np.ndarray:
    """Total count of each bucket over all of `texts`."""
    total = np.zeros(num_buckets, dtype=np.float64)
    for _, _, _, buckets in _chunks(texts, ngram, num_buckets):
        total += np.bincount(buckets, minlength=num_buckets)
    return total


def dsir_log_weights(pool: pa.Array, target: pa.Array, ngram: int = 2,
                     num_buckets: int = 10000) -> tuple[np.ndarray, _Model]:
    """log importance weight of each pool text toward `target` (and the fitted model)."""
    pool = as_string_array(pool)
    pool_counts = np.zeros(num_buckets)
    kept, kept_bytes = [], 0
    bucket_type = np.uint16 if num_buckets <= 1 << 16 else np.uint32
    for start, n, rows, buckets in _chunks(pool, ngram, num_buckets):
        pool_counts += np.bincount(buckets, minlength=num_buckets)
        # Keep the chunk's n-grams (compactly) for the second pass while
        # they fit in memory; chunks past the cap are hashed again.
        size = len(rows) * (4 + np.dtype(bucket_type).itemsize)
        fits = kept_bytes + size <= _KEEP_BYTES
        kept_bytes += size if fits else 0
        kept.append((start, n, (rows.astype(np.int32), buckets.astype(bucket_type)) if fits else None))
    model = _Model(ngram_counts(as_string_array(target), ngram, num_buckets), pool_counts)
    log_w = np.zeros(len(pool))
    for start, n, compact in kept:
        rows, buckets = compact if compact is not None else hashed_ngrams(pool.slice(start, n), ngram, num_buckets)
        log_w[start:start + n] = np.bincount(rows, weights=model.log_ratio[buckets], minlength=n)
    return log_w, model


def ngram_kl(model: _Model, texts: pa.Array, ngram: int, num_buckets: int) -> float:
    """KL(target || n-gram model of `texts`), both add-one smoothed."""
    counts = ngram_counts(as_string_array(texts), ngram, num_buckets)
    log_q = np.log((counts + 1.0) / (counts.sum() + num_buckets))
    return float(np.exp(model.log_pt) @ (model.log_pt - log_q))


def gumbel_top_k(logits: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """k indices drawn without replacement with probability ∝ exp(logits) at
    each draw, in draw order (Gumbel-top-k: the k largest logits + Gumbel noise)."""
    keys = np.asarray(logits, dtype=np.float64) + rng.gumbel(size=len(logits))
    keys[np.isneginf(logits)] = -np.inf
    k = min(int(k), len(keys))
    if k < len(keys):
        top = np.argpartition(-keys, k - 1)[:k]
        return top[np.argsort(-keys[top], kind="stable")]
    return np.argsort(-keys, kind="stable")


def target_similarity(pool: np.ndarray, target: np.ndarray, top_k: int = 1) -> np.ndarray:
    """Mean of each pool row's `top_k` largest cosine similarities to target rows."""
    pool, target = _unit(pool), _unit(target)
    k = min(top_k, len(target))
    out = np.empty(len(pool))
    step = max(1, (1 << 22) // len(target))  # (rows, target) block of ~16 MB
    for s in range(0, len(pool), step):
        sims = pool[s:s + step] @ target.T
        if k == 1:
            out[s:s + step] = sims.max(axis=1)
        else:
            out[s:s + step] = np.partition(sims, len(target) - k, axis=1)[:, len(target) - k:].mean(axis=1)
    return out


def take_prefix(order: np.ndarray, max_rows: int | None, tokens: np.ndarray | None,
                max_tokens: float | None) -> np.ndarray:
    """The leading rows of `order` that fit the budget (rows, or tokens: up
    to the first row that would overflow it)."""
    if max_tokens is not None:
        return order[: int(np.searchsorted(np.cumsum(tokens[order]), max_tokens, side="right"))]
    return order if max_rows is None else order[:max_rows]


# -- helpers -------------------------------------------------------------------
def target_texts_of(target: Any) -> list[str] | pa.Array:
    """The target's texts: a file (read with thresher's readers), a Dataset or a list."""
    if isinstance(target, (str, Path, Dataset)):
        return row_texts(_as_dataset(target))
    return list(target)


def _as_dataset(target: str | Path | Dataset) -> Dataset:
    if isinstance(target, Dataset):
        return target
    from thresher.data.readers import read_dataset

    return read_dataset(target).dataset


def _embed(ds: Dataset, model: str) -> np.ndarray:
    """Embeddings of a dataset's rows, of the same text the embedding featurizer uses."""
    from thresher.features.embeddings import embed, field_text

    return embed(field_text(ds.column("prompt"), ds.column("response"), "both"), model=model)


def _check_target(target: Any, method: str, target_embeddings: Any) -> None:
    if target is None:
        if method == "dsir" or target_embeddings is None:
            raise UsageError("give a target: a file of examples, a list of texts or a Dataset"
                             + ("" if method == "dsir" else " (or target_embeddings)"))
        return
    if isinstance(target, (str, Path)):
        if not Path(target).exists():
            raise UsageError(f"target file {str(target)!r} does not exist (a list of texts must be a list)")
        return
    if isinstance(target, Dataset):
        return
    if not isinstance(target, Sequence) or not len(target) or not all(isinstance(t, str) for t in target):
        raise UsageError("target must be a file path, a Dataset or a non-empty list of strings")


def _describe_target(target: Any) -> Any:
    if isinstance(target, Dataset):
        return {"dataset": target.source.path, "rows": len(target)}
    if isinstance(target, (str, Path)) or target is None:
        return None if target is None else str(target)
    return {"texts": len(target)}


def _array(col: pa.Array | pa.ChunkedArray) -> pa.Array:
    return col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col


def _unit(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.where(norms == 0, 1, norms)


def _quantiles(values: np.ndarray) -> dict[str, float] | None:
    if not len(values):
        return None
    q = np.quantile(values, [0.0, 0.5, 1.0])
    return {"min": float(q[0]), "median": float(q[1]), "max": float(q[2])}


def _ess_fraction(log_w: np.ndarray) -> float:
    """Kish effective sample size of the importance weights, as a fraction of the pool."""
    if not len(log_w):
        return 0.0
    w = np.exp(log_w - log_w.max())
    return float(w.sum() ** 2 / (w @ w) / len(w))
