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


def given_ids(table: pa.Table) -> pa.Array:
    """The `id` column as given, except marked copies (`_copy` = k > 0, written by
    `thresher balance`), which read as `<id>#k` so an oversampled file stays readable."""
    col = table.column("id").combine_chunks()
    if "_copy" not in table.column_names or pa.types.is_nested(col.type):
        return col
    copy = table.column("_copy").combine_chunks()
    if not (pa.types.is_integer(copy.type) and copy.null_count == 0):
        return col
    marked = pc.greater(copy, 0)
    suffixed = pc.binary_join_element_wise(col.cast(pa.string()), copy.cast(pa.string()), "#")
    return pc.if_else(marked, suffixed, col.cast(pa.string()))


def content_keys(ds, rows: np.ndarray | None = None) -> pa.Array:
    """One string per row (of `rows`, default all) that identifies its content.

    Two-field formats key on their original content fields joined by "\x1f";
    chat formats on "role\x1ftext" turns joined by "\x1e".
    """
    table = ds.table if rows is None else ds.table.take(pa.array(rows, pa.int64()))
    fmt = ds.source.record_format
    if fmt == "unknown":
        return pa.array([json.dumps(r, sort_keys=True, default=str, ensure_ascii=False) for r in table.to_pylist()])
    columns = _content_columns(ds)
    if columns is not None:
        parts = [_text(table, c) for c in columns]
        return pc.binary_join_element_wise(*parts, "\x1f") if len(parts) > 1 else parts[0]
    messages = ds.column("messages") if rows is None else ds.column("messages").take(pa.array(rows, pa.int64()))
    if isinstance(messages, pa.ChunkedArray):
        messages = messages.combine_chunks()
    values = messages.flatten()
    # content may be OpenAI parts or null (a tool call): key on the turn's text
    from thresher.data.chat import content_text

    roles = pc.fill_null(values.field("role").cast(pa.string()), "")
    turn = pc.binary_join_element_wise(roles, content_text(values.field("content")), "\x1f")
    joined = pa.ListArray.from_arrays(messages.offsets, turn)
    return pc.binary_join(joined, "\x1e")


def _content_columns(ds) -> list[str] | None:
    from thresher.data.formats import ROLES

    fmt = ds.source.record_format
    if fmt not in ("alpaca", "prompt_completion", "text"):
        return None
    fmap = dict(ds.source.field_map)
    required, optional = ROLES[fmt]
    return [fmap.get(r, r) for r in required[:1] + optional + required[1:] if fmap.get(r, r) in ds.table.column_names]


def _text(table: pa.Table, name: str) -> pa.Array:
    col = table.column(name).combine_chunks()
    if pa.types.is_null(col.type):
        col = pa.array([None] * len(col), pa.string())
    if not pa.types.is_string(col.type):
        col = col.cast(pa.string())
    return pc.fill_null(col, "") if col.null_count else col


def _group_codes(ds) -> np.ndarray:
    """Equal codes for rows with equal content keys, without building the keys when
    the content lives in plain columns (one hash table per column instead)."""
    columns = _content_columns(ds)
    if columns is None:
        return pc.dictionary_encode(content_keys(ds)).indices.to_numpy(zero_copy_only=False).astype(np.int64)
    codes = None
    for name in columns:
        col = pc.dictionary_encode(_text(ds.table, name))
        part = col.indices.to_numpy(zero_copy_only=False).astype(np.int64)
        if codes is None:
            codes = part
        else:
            pair = codes * (len(col.dictionary) + 1) + part
            codes = _dense_codes(pair)
    return codes


def _dense_codes(values: np.ndarray) -> np.ndarray:
    """Codes 0..k-1 for equal values (sort + diff: np.unique is slow on large int arrays)."""
    order = np.argsort(values, kind="stable")
    sorted_vals = values[order]
    new = np.r_[True, sorted_vals[1:] != sorted_vals[:-1]]
    codes = np.empty(len(values), dtype=np.int64)
    codes[order] = np.cumsum(new) - 1
    return codes


class DerivedIds:
    """Content-derived ids, hashed lazily: only the rows asked for are digested."""

    def __init__(self, ds):
        self._ds = ds
        self._codes = _group_codes(ds)
        self._occurrence = _occurrence_numbers(self._codes)

    def __len__(self) -> int:
        return len(self._codes)

    def of(self, rows: np.ndarray) -> np.ndarray:
        rows = np.asarray(rows, dtype=np.int64)
        return with_occurrences(content_hashes(content_keys(self._ds, rows)), self._occurrence[rows])


def content_hashes(keys: pa.Array) -> np.ndarray:
    """The hex content hash a derived id starts with, one per content key (object array)."""
    return np.array([hashlib.blake2b(k.encode("utf-8"), digest_size=8).hexdigest() for k in keys.to_pylist()],
                    dtype=object)


def with_occurrences(hashes: np.ndarray, occurrence: np.ndarray) -> np.ndarray:
    """Derived ids: the content hash, plus "-k" for the k-th repeat of the same content in file order."""
    ids = np.array(hashes, dtype=object)
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
