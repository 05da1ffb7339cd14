"""Composite scores for ranking selectors (DEITA's quality and complexity).

``quality_score`` in [0, 1] is a product of factors, one per heuristic signal
(1 = the signal sees no problem). Each factor is anchored at the value where
the quality rules of the bundled recipes draw their line, so the score orders
rows the way those rules filter them:

=====================  ==========================================================
signal                 factor
=====================  ==========================================================
empty_response         0 when empty
truncated_response     0.5 when it looks cut off
rep_ngram_ratio r      1 - r            (0.5 at the recipes' cut r = 0.5)
rep_line_ratio r       1 - r / 2
non_alnum_ratio x      1 up to 0.3 (code, maths), then down to 0.2 at x >= 0.7
upper_ratio u          1 - (u - 0.5) when u > 0.5 and the response has >= 20 chars
                       (shouting; "OK" and "A" are not penalized)
copy_overlap o         1 - o / 2        (the answer repeats the prompt)
ifd (with lm)          0.5 when >= 1 (the prompt does not help: misaligned pair)
ppl_response (lm)      1 up to 100, then down to 0.3 at 10,000 (log scale): garbled
=====================  ==========================================================

Response length is deliberately not a factor: short answers ("12", "Positive")
are correct answers to short tasks, and a length term is what made whole tasks
vanish from length-ranked selections. With ``lm="auto"`` (the default) the
two LM factors are used when the ``lm`` features are already cached for the
pool (``thresher featurize POOL --features lm``); the cache key says which.

``complexity`` in [0.05, 1] is a cheap proxy for DEITA's instruction
complexity, from the prompt only: 0.6 x min(1, log(1 + words) / log(257))
+ 0.4 x min(1, markers / 6), where markers counts constraint words (must,
exactly, at least, without, format, step, list, explain, compare, json,
...), question marks and extra lines. Floored at 0.05 so that a product
``complexity*quality_score`` still ranks rows with an empty prompt.
"""
from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from thresher.errors import UsageError
from thresher.features.base import Batch, Featurizer, string_column

_CONSTRAINTS = (r"(?i)\b(must|should|exactly|at least|at most|no more than|without|only|each|every|format|"
                r"steps?|list|explain|compare|contrast|json|table|bullet|words|sentences|example|why|how)\b")
LM_COLUMNS = ("ifd", "ppl_response")


class QualityScore(Featurizer):
    """`quality_score` in [0, 1]: the documented product of heuristic (and LM) factors."""

    name = "quality_score"
    version = "1"
    inputs = ()
    output_columns = ("quality_score",)

    def __init__(self, lm: bool | str = "auto"):
        if lm not in (True, False, "auto"):
            raise UsageError(f"quality_score lm must be true, false or 'auto', got {lm!r}")
        self.lm = lm

    def depends_on(self) -> list[Featurizer]:
        from thresher.features.lookup import make
        from thresher.features.quality import QualitySignals
        from thresher.features.text import TextStats

        return [TextStats(), QualitySignals()] + ([make("lm")] if self.lm is True else [])

    def bind(self, ds, store) -> "QualityScore":
        """lm="auto" made concrete: use the LM factors when the pool's `lm` features are cached."""
        if self.lm != "auto":
            return self
        from thresher.features.lookup import make

        return QualityScore(lm=store.is_cached(ds, make("lm")))

    def compute(self, batch: Batch) -> dict[str, pa.Array]:
        col = {name: _np(batch.column(name)) for name in batch.column_names}
        return {"quality_score": pa.array(quality_score(col, lm=self.lm is True))}


def quality_score(col: dict[str, np.ndarray], lm: bool = False) -> np.ndarray:
    """The composite from feature columns (see the module docstring)."""
    n = len(col["empty_response"])
    score = np.where(col["empty_response"].astype(bool), 0.0, 1.0)
    score *= np.where(col["truncated_response"].astype(bool), 0.5, 1.0)
    score *= np.clip(1.0 - col["rep_ngram_ratio"], 0.0, 1.0)
    score *= 1.0 - 0.5 * np.clip(col["rep_line_ratio"], 0.0, 1.0)
    score *= np.clip(1.0 - (col["non_alnum_ratio"] - 0.3) * 2.0, 0.2, 1.0)
    shouting = (col["response_chars"] >= 20) & (col["upper_ratio"] > 0.5)
    score *= np.where(shouting, 1.5 - col["upper_ratio"], 1.0)
    score *= 1.0 - 0.5 * np.clip(col["copy_overlap"], 0.0, 1.0)
    if lm:
        ifd = np.nan_to_num(col["ifd"].astype(np.float64), nan=0.0)
        score *= np.where(ifd >= 1.0, 0.5, 1.0)
        log_ppl = np.log10(np.nan_to_num(col["ppl_response"].astype(np.float64), nan=1.0).clip(1.0, None))
        score *= np.clip(1.0 - (log_ppl - 2.0) * 0.35, 0.3, 1.0)
    return np.clip(score, 0.0, 1.0).astype(np.float64).reshape(n)


class Complexity(Featurizer):
    """`complexity` in [0.05, 1]: prompt length and constraint markers (a DEITA complexity proxy)."""

    name = "complexity"
    version = "1"
    inputs = ("prompt",)
    output_columns = ("complexity",)

    def compute(self, batch: Batch) -> dict[str, pa.Array]:
        from thresher.features.text import count_words

        prompt = string_column(batch, "prompt")
        words = count_words(prompt).astype(np.float64)
        markers = (_count(prompt, _CONSTRAINTS) + _count(prompt, r"\?") + _count(prompt, r"\n\s*\S"))
        value = 0.6 * np.minimum(1.0, np.log1p(words) / np.log(257.0)) + 0.4 * np.minimum(1.0, markers / 6.0)
        return {"complexity": pa.array(np.clip(value, 0.05, 1.0))}


def _count(text: pa.Array, pattern: str) -> np.ndarray:
    return pc.count_substring_regex(text, pattern).to_numpy(zero_copy_only=False).astype(np.float64)


def _np(col) -> np.ndarray:
    if isinstance(col, pa.ChunkedArray):
        col = col.combine_chunks()
    if pa.types.is_boolean(col.type):
        return np.asarray(pc.fill_null(col, False).to_numpy(zero_copy_only=False), dtype=bool)
    if pa.types.is_integer(col.type) or pa.types.is_floating(col.type):
        return np.asarray(col.to_numpy(zero_copy_only=False), dtype=np.float64)
    return np.asarray(col.to_numpy(zero_copy_only=False), dtype=object)
