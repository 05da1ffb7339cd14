"""Overlap of a pool with an eval / benchmark set (decontamination), exact and near.

Used by `dedup --against EVAL_FILE`; see `selection.dedup` for the rules.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from thresher.data.dataset import Dataset
from thresher.errors import UsageError

NUM_PERM = 128
_SEED = 1
# Near matching needs enough words for shingles to mean something: "capital of
# France" vs "capital of Spain" is a different question, not an edited copy.
NEAR_MIN_WORDS = 8


@dataclass
class Overlap:
    """Per pool row: overlaps an eval row exactly / only near; the eval row matched (-1: none)."""

    exact: np.ndarray
    near: np.ndarray
    eval_row: np.ndarray
    eval_hit: np.ndarray  # per eval row: some pool row overlaps it
    eval_rows: int
    fields: str
    source: str
    jaccard: float

    def diagnostics(self) -> dict[str, Any]:
        return {"against": self.source, "fields": self.fields, "eval_rows": self.eval_rows,
                "overlap_exact": int(self.exact.sum()), "overlap_near": int(self.near.sum()),
                "overlap_rows": int((self.exact | self.near).sum()), "eval_rows_hit": int(self.eval_hit.sum()),
                "jaccard": self.jaccard}


def overlap_with(pool: Dataset, against: Any, fields, *, near: bool = True, jaccard: float = 0.7,
                 shingle_size: int = 3) -> Overlap:
    """Which pool rows overlap the eval set `against` (a file thresher reads, or a Dataset)."""
    from thresher.features.fields import parse_fields, resolve_fields
    from thresher.features.minhash import cross_matches, exact_hash, minhash_signatures

    eval_ds = _as_dataset(against)
    wanted = parse_fields(fields)
    pool_text = _texts(pool, resolve_fields(pool, wanted))
    eval_text = _texts(eval_ds, resolve_fields(eval_ds, wanted))
    pool_h, eval_h = _hashes(exact_hash, pool_text), _hashes(exact_hash, eval_text)
    live = _non_empty(pool_text)
    exact = live & np.isin(pool_h, eval_h[_non_empty(eval_text)])
    eval_row = np.full(len(pool), -1, dtype=np.int64)
    if exact.any():
        order = np.argsort(eval_h, kind="stable")
        eval_row[exact] = order[np.searchsorted(eval_h[order], pool_h[exact])]
    eval_hit = _non_empty(eval_text) & np.isin(eval_h, pool_h[exact])
    near_hit = np.zeros(len(pool), dtype=bool)
    if near and len(eval_text):
        from thresher.features.text import count_words

        rest = np.flatnonzero(live & ~exact & (count_words(pool_text) >= NEAR_MIN_WORDS))
        eval_long = np.flatnonzero(count_words(eval_text) >= NEAR_MIN_WORDS)
        sig_p = minhash_signatures(pool_text.take(pa.array(rest, pa.int64())), NUM_PERM, shingle_size, _SEED)
        sig_e = minhash_signatures(eval_text.take(pa.array(eval_long, pa.int64())), NUM_PERM, shingle_size, _SEED)
        _, match = cross_matches(sig_p, sig_e, jaccard)
        match = np.where(match >= 0, eval_long[np.maximum(match, 0)] if len(eval_long) else -1, -1)
        near_hit[rest[match >= 0]] = True
        eval_row[rest[match >= 0]] = match[match >= 0]
        eval_hit[match[match >= 0]] = True
    label = wanted if isinstance(wanted, str) else "+".join(wanted)
    return Overlap(exact, near_hit, eval_row, eval_hit, len(eval_ds), label, _describe(against), float(jaccard))


def _texts(ds: Dataset, fields) -> pa.Array:
    from thresher.features.fields import field_text, input_columns

    return field_text(pa.table({c: ds.column(c) for c in input_columns(fields)}), fields)


def _hashes(exact_hash, text: pa.Array) -> np.ndarray:
    return np.asarray(pc.fill_null(exact_hash(text), 0).to_numpy(zero_copy_only=False), dtype=np.uint64)


def _non_empty(text: pa.Array) -> np.ndarray:
    """Rows with at least one letter or digit (empty prompts match nothing)."""
    return np.asarray(pc.match_substring_regex(text, r"[\p{L}\p{N}]").to_numpy(zero_copy_only=False), dtype=bool)


def _as_dataset(against: Any) -> Dataset:
    if isinstance(against, Dataset):
        return against
    if isinstance(against, (str, Path)):
        if not Path(against).exists():
            raise UsageError(f"dedup --against: no such file {against}")
        from thresher.data.readers import read_dataset

        return read_dataset(against).dataset
    raise UsageError(f"dedup: against must be an eval file or a Dataset, got {type(against).__name__}")


def _describe(against: Any) -> str:
    return str(against) if isinstance(against, (str, Path)) else f"Dataset({len(against)} rows)"
