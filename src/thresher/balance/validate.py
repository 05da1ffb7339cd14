"""Validation of generated candidates before they join the pool.

A candidate (prompt, response) offered for a category is kept only when it

1. has a non-empty prompt and response (reason ``empty``),
2. passes the quality rule (``low_quality``): a `thresher.selection.quality`
   rule over the `quality` featurizer's signals of the pair, the same signals
   of the prompt alone (prefixed ``prompt_``), ``prompt_words`` /
   ``response_words`` and ``echo`` (the response repeats the prompt); the
   default rule also rejects responses that mostly copy the prompt. A clause that most of the category's own pool rows
   fail (e.g. punctuation-heavy regex prompts) is waived for that category,
3. is not an exact duplicate (``exact_duplicate``): its normalized prompt
   (lower-cased, no punctuation, collapsed spaces) equals the prompt of a pool
   row or of a candidate accepted before; a generated example that re-asks a
   known instruction adds nothing,
4. is not a near duplicate (``near_duplicate``): the MinHash estimate of the
   word-shingle Jaccard similarity of "prompt, blank line, response" to a pool
   row or an accepted candidate reaches the threshold (less `verify_z`
   standard errors of the estimate, as `near_duplicate_clusters` verifies),
5. is on its category (``off_category``): its static embedding is more cosine
   similar (by `margin`) to its category's centroid than to any other
   category's centroid; centroids are the normalized mean embeddings of the
   pool's rows per category.

The first failing check names the reason. Candidates of one call are checked
in order, so the second of two duplicate candidates is rejected.
"""
from __future__ import annotations

import ast
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from thresher.errors import UsageError

REASONS = ("unparseable", "empty", "low_quality", "exact_duplicate", "near_duplicate", "off_category")
DEFAULT_QUALITY_RULE = (
    "not empty_response and not truncated_response and rep_ngram_ratio < 0.5 and rep_line_ratio < 0.5 "
    "and non_alnum_ratio < 0.5 and prompt_rep_ngram_ratio < 0.5 and prompt_non_alnum_ratio < 0.5 "
    "and not echo and copy_overlap < 0.8"
)
_WAIVE_BELOW = 0.5  # a clause fewer than half the category's own rows pass is waived
_MIX = np.uint64(0x9E3779B97F4A7C15)


@dataclass(frozen=True)
class Verdict:
    """The outcome for one candidate: kept, or the first reason it was not (with a detail)."""

    accepted: bool
    reason: str | None = None
    detail: str | None = None


def pair_text(prompts: Sequence[str] | pa.Array, responses: Sequence[str] | pa.Array) -> pa.Array:
    """The text compared for near duplicates and embedded: prompt, blank line, response."""
    from thresher.features.embeddings import field_text

    return pa.array(field_text(prompts, responses, "both"), pa.string())


class CandidateValidator:
    """Checks generated (prompt, response) candidates against a pool (see the module docstring).

    The pool's side (hashes, MinHash bands, category centroids) is computed
    once here. `validate(..., commit=True)` remembers the accepted candidates,
    so later calls reject duplicates of them too; `commit=False` only judges
    (`remember` then adds the ones actually kept).
    """

    def __init__(self, pool, by: str, near_threshold: float = 0.8, quality_where: str = DEFAULT_QUALITY_RULE,
                 quality_params: dict[str, Any] | None = None, shingle_size: int = 3, num_perm: int = 128,
                 verify_z: float = 2.0, embedding_model: str = "static", margin: float = 0.0):
        from thresher.features.quality import QualitySignals
        from thresher.selection.quality import parse_rules

        if isinstance(near_threshold, bool) or not isinstance(near_threshold, (int, float)) \
                or not 0 < near_threshold <= 1:
            raise UsageError(f"near_threshold must be a Jaccard similarity in (0, 1], got {near_threshold!r}")
        if not verify_z >= 0:
            raise UsageError(f"verify_z must be >= 0, got {verify_z!r}")
        if not isinstance(margin, (int, float)) or not -2 <= margin <= 2:
            raise UsageError(f"margin must be a cosine difference in [-2, 2], got {margin!r}")
        if not isinstance(by, str) or not by:
            raise UsageError("by: name the category field, e.g. by='category'")
        self.by = by
        self.near_threshold = float(near_threshold)
        self.quality_where = quality_where
        self.quality_params = dict(quality_params or {})
        self.shingle_size = shingle_size
        self.num_perm = num_perm
        self.verify_z = float(verify_z)
        self.embedding_model = embedding_model
        self.margin = float(margin)
        self._quality = QualitySignals(**self.quality_params)
        self._clauses = parse_rules(quality_where)
        self._index_pool(pool)

    # -- pool side ------------------------------------------------------------
    def _index_pool(self, pool) -> None:
        from thresher.features.embeddings import embed
        from thresher.features.minhash import choose_bands, exact_hash, minhash_signatures

        codes, labels = pool.categorical([self.by])  # UsageError names the field when it is missing
        self.labels: list[str] = labels
        self.codes = codes
        self._prompts = _plain(pool.column("prompt"))
        self._responses = _plain(pool.column("response"))
        self._known_prompts = np.sort(_hashes(exact_hash(self._prompts)))
        self._cut = self.near_threshold - self.verify_z * np.sqrt(
            self.near_threshold * (1 - self.near_threshold) / self.num_perm)
        self._bands, self._rows = choose_bands(max(self._cut, 1e-6), self.num_perm)
        sig = minhash_signatures(pair_text(self._prompts, self._responses), self.num_perm, self.shingle_size)
        self._band_index = _BandIndex(sig, self._bands, self._rows)
        self._accepted_sig = np.empty((0, self.num_perm), np.uint32)
        emb = embed(pair_text(self._prompts, self._responses), self.embedding_model)
        sums = np.zeros((len(labels), emb.shape[1]), np.float64)
        np.add.at(sums, codes, emb)
        norms = np.linalg.norm(sums, axis=1, keepdims=True)
        self.centroids = np.divide(sums, norms, out=np.zeros_like(sums), where=norms > 0).astype(np.float32)
        nearest = (emb @ self.centroids.T).argmax(axis=1) if len(emb) else np.zeros(0, np.int64)
        hits = np.bincount(codes, weights=nearest == codes, minlength=len(labels))
        sizes = np.bincount(codes, minlength=len(labels))
        #: share of each category's own pool rows nearest to their own centroid
        self.centroid_agreement = {lab: float(hits[i] / sizes[i]) for i, lab in enumerate(labels) if sizes[i]}
        self._waived: dict[str, list[str]] = {}

    def category_rows(self, category: str) -> np.ndarray:
        """Pool row indices of `category` (a UsageError if the pool has none)."""
        return np.flatnonzero(self.codes == self._code(category))

    def category_pairs(self, category: str) -> list[tuple[str, str]]:
        """(prompt, response) of each pool row of `category`, in pool order."""
        rows = pa.array(self.category_rows(category))
        return list(zip(self._prompts.take(rows).to_pylist(), self._responses.take(rows).to_pylist()))

    def _code(self, category: str) -> int:
        try:
            return self.labels.index(category)
        except ValueError:
            raise UsageError(f"no category {category!r} in field {self.by!r}; "
                             f"categories: {', '.join(self.labels[:20])}") from None

    def waived(self, category: str) -> list[str]:
        """Quality clauses waived for `category` (most of its own pool rows fail them)."""
        if category not in self._waived:
            rows = self.category_rows(category)
            passed = self._clause_passes(self._prompts.take(pa.array(rows)), self._responses.take(pa.array(rows)))
            self._waived[category] = [ast.unparse(c) for c, ok in zip(self._clauses, passed)
                                      if len(rows) and ok.mean() < _WAIVE_BELOW]
        return self._waived[category]

    # -- candidates -----------------------------------------------------------
    def validate(self, category: str, prompts: Sequence[str], responses: Sequence[str],
                 commit: bool = True) -> list[Verdict]:
        """One Verdict per candidate, in order (see the module docstring for the checks)."""
        if len(prompts) != len(responses):
            raise UsageError(f"got {len(prompts)} prompts but {len(responses)} responses; they must pair up")
        code = self._code(category)
        if not len(prompts):
            return []
        p = pc.fill_null(pa.array(list(prompts), pa.string()), "")
        r = pc.fill_null(pa.array(list(responses), pa.string()), "")
        verdicts: list[Verdict | None] = [None] * len(p)
        empty = _np(pc.equal(pc.utf8_length(pc.utf8_trim_whitespace(p)), 0)) | \
            _np(pc.equal(pc.utf8_length(pc.utf8_trim_whitespace(r)), 0))
        self._mark(verdicts, empty, "empty", None)
        self._check_quality(verdicts, category, p, r)
        hashes = _hashes(_exact_hash(p))
        self._mark(verdicts, _isin_sorted(hashes, self._known_prompts), "exact_duplicate", "prompt seen in the pool")
        sig = _signatures(pair_text(p, r), self.num_perm, self.shingle_size)
        near, detail = self._near_known(sig)
        for i in np.flatnonzero(near):
            self._mark_one(verdicts, int(i), "near_duplicate", detail[i])
        self._check_category(verdicts, code, p, r)
        accepted = self._within_batch(verdicts, hashes, sig)
        if commit:
            self._remember(hashes[accepted], sig[accepted])
        return [v or Verdict(True) for v in verdicts]

    def remember(self, prompts: Sequence[str], responses: Sequence[str]) -> None:
        """Count these (kept) candidates as known: later duplicates of them are rejected."""
        p = pc.fill_null(pa.array(list(prompts), pa.string()), "")
        r = pc.fill_null(pa.array(list(responses), pa.string()), "")
        self._remember(_hashes(_exact_hash(p)), _signatures(pair_text(p, r), self.num_perm, self.shingle_size))

    def _remember(self, hashes: np.ndarray, sig: np.ndarray) -> None:
        if len(hashes):
            self._known_prompts = np.sort(np.concatenate([self._known_prompts, hashes]))
            self._accepted_sig = np.concatenate([self._accepted_sig, sig])

    def _check_quality(self, verdicts, category: str, p: pa.Array, r: pa.Array) -> None:
        waived = set(self.waived(category))
        passed = self._clause_passes(p, r)
        for clause, ok in zip(self._clauses, passed):
            text = ast.unparse(clause)
            if text not in waived:
                self._mark(verdicts, ~ok, "low_quality", f"fails {text}")

    def _clause_passes(self, p: pa.Array, r: pa.Array) -> list[np.ndarray]:
        from thresher.selection.quality import evaluate

        features = quality_features(p, r, self._quality)
        out = []
        with np.errstate(invalid="ignore"):
            for clause in self._clauses:
                try:
                    value = evaluate(clause, features)
                except KeyError as err:
                    raise UsageError(f"quality rule {self.quality_where!r}: unknown feature {err.args[0]!r}; "
                                     f"known: {', '.join(sorted(features))}") from None
                out.append(np.broadcast_to(np.asarray(value, dtype=bool), (len(p),)))
        return out

    def _near_known(self, sig: np.ndarray) -> tuple[np.ndarray, list[str | None]]:
        """Per candidate: is it a near duplicate of a pool row or an accepted candidate, and of which."""
        near = np.zeros(len(sig), bool)
        detail: list[str | None] = [None] * len(sig)
        pairs = self._band_index.query(sig)
        if len(pairs):
            jac = _jaccard(sig[pairs[:, 0]], self._band_index.sig[pairs[:, 1]])
            hit = pairs[jac >= self._cut]
            near[hit[:, 0]] = True
            for i, j in hit[::-1].tolist():  # the first hit per candidate wins the detail
                detail[i] = f"pool row {j}"
        if len(self._accepted_sig):
            jac = _jaccard(sig[:, None, :], self._accepted_sig[None, :, :])
            hit = (jac >= self._cut).any(axis=1) & ~near
            near |= hit
            for i in np.flatnonzero(hit).tolist():
                detail[i] = "an accepted candidate"
        live = sig[:, 0] != _empty_signature()
        return near & live, detail

    def _check_category(self, verdicts, code: int, p: pa.Array, r: pa.Array) -> None:
        from thresher.features.embeddings import embed

        if len(self.labels) < 2:
            return
        sims = embed(pair_text(p, r), self.embedding_model) @ self.centroids.T
        own = sims[:, code].copy()
        sims[:, code] = -np.inf
        rival = sims.argmax(axis=1)
        off = own <= sims[np.arange(len(own)), rival] + self.margin
        for i in np.flatnonzero(off).tolist():
            self._mark_one(verdicts, i, "off_category", f"closer to {self.labels[rival[i]]!r} "
                                                          f"({sims[i, rival[i]]:.3f} vs {own[i]:.3f})")

    def _within_batch(self, verdicts, hashes: np.ndarray, sig: np.ndarray) -> np.ndarray:
        """Reject candidates duplicating an earlier accepted one of this call; the accepted indices."""
        kept: list[int] = []
        for i, v in enumerate(verdicts):
            if v is not None:
                continue
            if kept and (hashes[kept] == hashes[i]).any():
                verdicts[i] = Verdict(False, "exact_duplicate", "prompt of an accepted candidate")
            elif kept and sig[i, 0] != _empty_signature() and (_jaccard(sig[kept], sig[i]) >= self._cut).any():
                verdicts[i] = Verdict(False, "near_duplicate", "an accepted candidate")
            else:
                kept.append(i)
        return np.asarray(kept, np.int64)

    @staticmethod
    def _mark(verdicts, mask: np.ndarray, reason: str, detail: str | None) -> None:
        for i in np.flatnonzero(mask).tolist():
            CandidateValidator._mark_one(verdicts, i, reason, detail)

    @staticmethod
    def _mark_one(verdicts, i: int, reason: str, detail: str | None) -> None:
        if verdicts[i] is None:
            verdicts[i] = Verdict(False, reason, detail)

    def params(self) -> dict[str, Any]:
        return {"by": self.by, "near_threshold": self.near_threshold, "quality_where": self.quality_where,
                "quality_params": self.quality_params, "shingle_size": self.shingle_size,
                "num_perm": self.num_perm, "verify_z": self.verify_z, "embedding_model": self.embedding_model,
                "margin": self.margin}


def quality_features(prompts: pa.Array, responses: pa.Array, featurizer=None) -> dict[str, np.ndarray]:
    """The `quality` signals of each pair, the same signals of the prompt alone
    (``prompt_`` prefix), ``prompt_words`` / ``response_words``, and ``echo``
    (the response is the prompt, up to case and punctuation)."""
    from thresher.features.quality import QualitySignals
    from thresher.features.text import count_words

    featurizer = featurizer or QualitySignals()
    pair = featurizer.compute(pa.table({"prompt": prompts, "response": responses}))
    alone = featurizer.compute(pa.table({"prompt": pa.array([""] * len(prompts), pa.string()),
                                         "response": prompts}))
    out = {k: _feature(v) for k, v in pair.items()}
    out.update({f"prompt_{k}": _feature(v) for k, v in alone.items()})
    out["echo"] = _np(pc.equal(_exact_hash(prompts), _exact_hash(responses)))
    out["prompt_words"] = count_words(prompts)
    out["response_words"] = count_words(responses)
    return out


class _BandIndex:
    """LSH band keys of the pool's signatures, sorted per band, for candidate look-ups."""

    def __init__(self, sig: np.ndarray, bands: int, rows: int):
        self.sig, self.bands, self.rows = sig, bands, rows
        live = np.flatnonzero(sig[:, 0] != _empty_signature())
        keys = _band_keys(sig[live], bands, rows)
        self.order = [live[np.argsort(keys[:, b], kind="stable")] for b in range(bands)]
        self.sorted = [np.sort(keys[:, b]) for b in range(bands)]

    def query(self, sig: np.ndarray) -> np.ndarray:
        """Unique (candidate, pool row) pairs sharing at least one band."""
        keys = _band_keys(sig, self.bands, self.rows)
        found = [np.zeros((0, 2), np.int64)]
        for b in range(self.bands):
            lo = np.searchsorted(self.sorted[b], keys[:, b], "left")
            hi = np.searchsorted(self.sorted[b], keys[:, b], "right")
            size = hi - lo
            cand = np.repeat(np.arange(len(sig)), size)
            offset = np.arange(int(size.sum())) - np.repeat(np.cumsum(size) - size, size)
            found.append(np.stack([cand, self.order[b][np.repeat(lo, size) + offset]], axis=1))
        return np.unique(np.concatenate(found), axis=0)


def _band_keys(sig: np.ndarray, bands: int, rows: int) -> np.ndarray:
    """(n, bands) uint64: a mixing hash of each band's values (a collision only adds a pair to verify)."""
    key = np.zeros((len(sig), bands), np.uint64)
    cube = sig[:, : bands * rows].reshape(len(sig), bands, rows).astype(np.uint64)
    with np.errstate(over="ignore"):
        for j in range(rows):
            key = (key ^ cube[:, :, j]) * _MIX
            key ^= key >> np.uint64(29)
    return key


def _jaccard(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.count_nonzero(a == b, axis=-1) / a.shape[-1]


def _signatures(text: pa.Array, num_perm: int, shingle_size: int) -> np.ndarray:
    from thresher.features.minhash import minhash_signatures

    return minhash_signatures(text, num_perm, shingle_size)


def _empty_signature() -> np.uint32:
    from thresher.features.minhash import EMPTY_SIGNATURE

    return EMPTY_SIGNATURE


def _exact_hash(text: pa.Array) -> pa.Array:
    from thresher.features.minhash import exact_hash

    return exact_hash(text)


def _isin_sorted(values: np.ndarray, sorted_known: np.ndarray) -> np.ndarray:
    if not len(sorted_known):
        return np.zeros(len(values), bool)
    at = np.minimum(np.searchsorted(sorted_known, values), len(sorted_known) - 1)
    return sorted_known[at] == values


def _hashes(arr: pa.Array) -> np.ndarray:
    return np.asarray(pc.fill_null(arr, 0).to_numpy(zero_copy_only=False), np.uint64)


def _plain(col) -> pa.Array:
    if isinstance(col, pa.ChunkedArray):
        col = col.combine_chunks() if col.num_chunks else pa.array([], pa.string())
    return pc.fill_null(col.cast(pa.string()), "")


def _feature(arr: pa.Array) -> np.ndarray:
    if pa.types.is_boolean(arr.type):
        return _np(arr)
    if pa.types.is_string(arr.type):
        return np.asarray(arr.to_pylist(), dtype=object)
    return np.asarray(arr.to_numpy(zero_copy_only=False), dtype=np.float64)


def _np(arr) -> np.ndarray:
    return np.asarray(pc.fill_null(arr, False).to_numpy(zero_copy_only=False), dtype=bool)
