"""Strata (cells) from one or more categorical fields: the one place that turns
field values into stratum codes, keys and labels.

A stratum's key is the tuple of its field values as strings (None for a null),
so grouping never depends on how values print. Its label is that tuple made
readable and unambiguous: a null is ``<null>``; fields are joined by ``|``; a
literal ``\\`` or ``|`` inside a value is escaped with a backslash, and so is a
value's leading ``<``, so a literal string ``"<null>"`` reads ``\\<null>``.
Ordinary values (no ``\\``, ``|`` or leading ``<``) read as themselves.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from thresher.data.dataset import Dataset
from thresher.errors import UsageError

__all__ = ["NULL_LABEL", "SEPARATOR", "Strata", "escape", "row_labels", "strata"]

NULL_LABEL = "<null>"
SEPARATOR = "|"


@dataclass(frozen=True)
class Strata:
    """codes: the stratum (0..H-1) of every row; keys / labels: per stratum,
    sorted by label, so codes do not depend on row order."""

    codes: np.ndarray
    keys: list[tuple[str | None, ...]]
    labels: list[str]

    def lookup(self, values: dict, what: str) -> np.ndarray:
        """One number per stratum from a dict keyed by label (or by key tuple,
        or, for one field, by the bare value)."""
        out, missing = np.empty(len(self.labels)), []
        for h, (key, label) in enumerate(zip(self.keys, self.labels)):
            for k in (label, key, *(key if len(key) == 1 else ())):
                if k in values:
                    out[h] = float(values[k])
                    break
            else:
                missing.append(label)
        if missing:
            raise UsageError(f"{what} has no value for stratum {missing[0]!r}"
                             f"{f' (and {len(missing) - 1} more)' if len(missing) > 1 else ''}; "
                             f"give one for every stratum: {', '.join(map(repr, self.labels[:10]))}")
        return out


def escape(values: pa.Array) -> pa.Array:
    """String values as label parts: nulls become ``<null>``; ``\\``, ``|`` and
    a leading ``<`` are escaped so no value can read like another or a null."""
    text = pc.replace_substring(values, "\\", "\\\\")
    text = pc.replace_substring(text, SEPARATOR, "\\" + SEPARATOR)
    slash, empty = pa.scalar("\\", text.type), pa.scalar("", text.type)
    text = pc.if_else(pc.starts_with(text, "<"), pc.binary_join_element_wise(slash, text, empty), text)
    return pc.fill_null(text, NULL_LABEL)


def strata(ds: Dataset, names: Sequence[str]) -> Strata:
    """The strata of `ds` defined by the fields `names` (one or several)."""
    if not names:
        raise UsageError("give at least one field for strata/categories")
    parts = [_field_codes(ds, name) for name in names]
    codes, combos = parts[0][0], np.arange(len(parts[0][1]))[:, None]
    for more_codes, more_values in parts[1:]:
        codes, combos = _combine(codes, combos, more_codes, len(more_values))
    values = [vals for _, vals in parts]
    keys = [tuple(values[f][c] for f, c in enumerate(row)) for row in combos.tolist()]
    texts = [escape(pa.array(vals, pa.large_string())).to_pylist() for vals in values]
    labels = [SEPARATOR.join(texts[f][c] for f, c in enumerate(row)) for row in combos.tolist()]
    order = np.argsort(np.asarray(labels, dtype=str), kind="stable")
    rank = np.empty(len(order), dtype=np.int64)
    rank[order] = np.arange(len(order))
    return Strata(rank[codes], [keys[i] for i in order], [labels[i] for i in order])


def row_labels(table: pa.Table, names: Sequence[str]) -> pa.Array:
    """Every row's stratum label (as in `strata`), computed column-wise; for
    comparing strata across tables, e.g. a subset and its pool."""
    parts = [escape(_as_strings(table.column(name), name)) for name in names]
    if len(parts) == 1:
        return parts[0]
    return pc.binary_join_element_wise(*parts, pa.scalar(SEPARATOR, pa.large_string()))


def _as_strings(col, name: str) -> pa.Array:
    col = col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col
    if pa.types.is_nested(col.type):
        raise UsageError(f"field '{name}' is {col.type}; a category must be a scalar")
    if pa.types.is_dictionary(col.type):
        col = col.dictionary_decode()
    return pc.cast(col, pa.large_string())


def _field_codes(ds: Dataset, name: str) -> tuple[np.ndarray, list[str | None]]:
    """One field as (code per row, distinct values as strings, None for null)."""
    col = ds.column(name)
    col = col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col
    if pa.types.is_nested(col.type):
        raise UsageError(f"{ds.source.path}: field '{name}' is {col.type}; a category must be a scalar")
    # Hash the raw values, then stringify only the (small) dictionary.
    encoded = col if pa.types.is_dictionary(col.type) else pc.dictionary_encode(col)
    raw = pc.fill_null(encoded.indices, len(encoded.dictionary)).to_numpy(zero_copy_only=False)
    strings = pc.cast(encoded.dictionary, pa.large_string()).to_pylist() + [None]
    # Values printing alike (e.g. NaNs, a given dictionary's repeats) are one value.
    distinct, remap = _unique_objects(strings)
    used, codes = _compact(remap[raw], len(distinct))
    return codes, [distinct[u] for u in used.tolist()]


def _unique_objects(values: list[str | None]) -> tuple[list[str | None], np.ndarray]:
    index: dict[str | None, int] = {}
    remap = np.array([index.setdefault(v, len(index)) for v in values], dtype=np.int64)
    return list(index), remap


def _combine(codes: np.ndarray, combos: np.ndarray, more: np.ndarray, width: int) -> tuple[np.ndarray, np.ndarray]:
    """Codes of the observed (current cell, next field value) pairs and their
    per-field code rows."""
    pair = codes * width + more
    seen, inverse = _compact(pair, len(combos) * width)
    rows = np.concatenate([combos[seen // width], (seen % width)[:, None]], axis=1)
    return inverse, rows


def _compact(codes: np.ndarray, bound: int) -> tuple[np.ndarray, np.ndarray]:
    """The used values of `codes` (all in 0..bound-1), sorted, and each row's
    index among them: a counting pass when `bound` is modest, else a sort."""
    if bound <= 4 * len(codes) + 1024:
        used = np.flatnonzero(np.bincount(codes, minlength=bound))
        lookup = np.zeros(bound, dtype=np.int64)
        lookup[used] = np.arange(len(used))
        return used, lookup[codes]
    used, inverse = np.unique(codes, return_inverse=True)
    return used, inverse.reshape(-1).astype(np.int64)
