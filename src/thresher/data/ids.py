"""Row ids: a given `id` column (must be unique) or one derived from content.

Derived ids are the first 16 hex digits of BLAKE2b over the row's canonical
content (roles and texts of its messages). Real pools hold exact duplicates,
so the k-th repeat of a content gets the suffix `-k`: ids stay unique and
stable under reordering of unrelated rows.
"""
from __future__ import annotations

import hashlib
import json

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from thresher.data.formats import Problem


def check_given_ids(column) -> list[Problem]:
    """Null or duplicate given ids, one problem per offending row."""
    col = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    if pa.types.is_nested(col.type):
        return [Problem(int(r), "id", "field 'id' must be a string or a number")
                for r in np.flatnonzero(col.is_valid().to_numpy(zero_copy_only=False))]
    problems = [Problem(int(r), "id", "field 'id' is null")
                for r in np.flatnonzero(col.is_null().to_numpy(zero_copy_only=False))]
    codes = pc.dictionary_encode(col.cast(pa.string())).indices.to_numpy(zero_copy_only=False)
    order = np.argsort(codes, kind="stable")
    sorted_codes = codes[order]
    repeat = np.flatnonzero(sorted_codes[1:] == sorted_codes[:-1]) + 1
    if len(repeat):
        group_start = np.searchsorted(sorted_codes, sorted_codes[repeat], side="left")
        for pos, first in zip(repeat.tolist(), group_start.tolist()):
            row, first_row = int(order[pos]), int(order[first])
            if col[row].is_valid:
                problems.append(Problem(row, "id", f"duplicate id {col[row].as_py()!r} (first at row {first_row})"))
    return problems


def content_keys(ds) -> pa.Array:
    """One string per row that identifies its content: "role\x1ftext" turns joined by "\x1e"."""
    if ds.source.record_format == "unknown":
        rows = ds.table.to_pylist()
        return pa.array([json.dumps(r, sort_keys=True, default=str, ensure_ascii=False) for r in rows])
    if ds.source.record_format in ("alpaca", "prompt_completion"):
        # same string the two-turn messages column would give, without building it
        prompt, response = ds.column("prompt"), ds.column("response")
        return pc.binary_join_element_wise("user\x1f", prompt, "\x1eassistant\x1f", response, "")
    messages = ds.column("messages")
    values = messages.flatten()
    turn = pc.binary_join_element_wise(values.field("role"), values.field("content"), "\x1f")
    joined = pa.ListArray.from_arrays(messages.offsets, turn)
    return pc.binary_join(joined, "\x1e")


class DerivedIds:
    """Content-derived ids, hashed lazily: only the rows asked for are digested."""

    def __init__(self, ds):
        encoded = pc.dictionary_encode(content_keys(ds))
        self._keys = encoded.dictionary
        self._codes = encoded.indices.to_numpy(zero_copy_only=False)
        self._occurrence = _occurrence_numbers(self._codes)

    def __len__(self) -> int:
        return len(self._codes)

    def of(self, rows: np.ndarray) -> np.ndarray:
        codes = self._codes[rows]
        uniq, inverse = np.unique(codes, return_inverse=True)
        keys = self._keys.take(pa.array(uniq)).to_pylist()
        digests = np.array([hashlib.blake2b(k.encode("utf-8"), digest_size=8).hexdigest() for k in keys],
                           dtype=object)
        ids = digests[inverse.ravel()]
        occurrence = self._occurrence[rows]
        dup = occurrence > 0
        if dup.any():
            ids[dup] = [f"{h}-{k}" for h, k in zip(ids[dup], occurrence[dup])]
        return ids


def derive_ids(ds) -> pa.Array:
    derived = DerivedIds(ds)
    return pa.array(derived.of(np.arange(len(derived))), pa.string())


def _occurrence_numbers(codes: np.ndarray) -> np.ndarray:
    """0 for the first row of each code, 1 for the second, ... (file order)."""
    order = np.argsort(codes, kind="stable")
    sorted_codes = codes[order]
    starts = np.flatnonzero(np.r_[True, sorted_codes[1:] != sorted_codes[:-1]])
    group_start = np.repeat(starts, np.diff(np.r_[starts, len(codes)]))
    occurrence = np.empty(len(codes), dtype=np.int64)
    occurrence[order] = np.arange(len(codes)) - group_start
    return occurrence
