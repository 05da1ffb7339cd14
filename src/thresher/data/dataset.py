"""`Dataset`: the pool as an Arrow table plus its source and canonical columns."""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Iterator, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from thresher.errors import UsageError

CANONICAL = ("id", "messages", "prompt", "response")
MISSING_LABEL = "(missing)"
# bump when normalization changes what a row reads as: it is part of every fingerprint
NORMALIZATION_VERSION = "1"


@dataclass(frozen=True)
class Source:
    """Where a Dataset came from; enough to write a subset back the same way."""

    path: str = "<memory>"
    sha256: str = ""
    file_format: str = "memory"  # jsonl | json | csv | parquet | hf | memory
    record_format: str = "unknown"  # alpaca | sharegpt | messages | prompt_completion | text
    field_map: tuple[tuple[str, str], ...] = ()  # canonical role -> original column


class Dataset:
    """Rows of a pool. `table` holds the original columns untouched (in the
    input's field order); canonical columns (`id`, `messages`, `prompt`,
    `response`) are derived on first use and cached."""

    def __init__(
        self,
        table: pa.Table,
        source: Source | None = None,
        *,
        ids: pa.Array | None = None,
        canonical: dict[str, pa.Array] | None = None,
        raw: "RawRecords | None" = None,
        origin_rows: np.ndarray | None = None,
    ):
        self.table = table
        self.source = source or Source()
        self._ids = ids
        self._derived = None  # lazily built DerivedIds when no id column is given
        self._canonical = dict(canonical or {})
        self.raw = raw  # original bytes per row, when the reader kept them
        # Position of each row in the file it was read from (1-based line for
        # JSONL/CSV, 0-based record index otherwise); used in messages.
        self.origin_rows = origin_rows if origin_rows is not None else np.arange(table.num_rows, dtype=np.int64)

    # -- construction ----------------------------------------------------
    @classmethod
    def from_records(cls, records: list[dict], record_format: str | None = None) -> "Dataset":
        """An in-memory Dataset (mainly for tests and the Python API)."""
        table = pa.Table.from_pylist(records)
        return normalize_table(table, Source(), record_format)

    @classmethod
    def from_table(cls, table: pa.Table) -> "Dataset":
        """A Dataset over a table with no record format (sampling works on any columns)."""
        return cls(table)

    # -- basic facts -----------------------------------------------------
    def __len__(self) -> int:
        return self.table.num_rows

    @property
    def num_rows(self) -> int:
        return self.table.num_rows

    @property
    def fields(self) -> list[str]:
        return list(self.table.column_names)

    @property
    def ids(self) -> np.ndarray:
        """Row ids as a numpy array of str (given `id` column or content-derived)."""
        if self._ids is None:
            self._ids = pa.array(self.ids_of(np.arange(self.num_rows)), pa.string())
        return np.asarray(self._ids.to_numpy(zero_copy_only=False), dtype=object)

    @property
    def fingerprint(self) -> str:
        """Identifies this exact set of rows: input bytes, normalization and row positions."""
        import hashlib

        h = hashlib.sha256()
        if self.source.sha256:
            h.update(f"{self.source.sha256}|{NORMALIZATION_VERSION}|{self.source.record_format}|"
                     f"{self.source.field_map}".encode())
            h.update(np.ascontiguousarray(self.origin_rows, dtype=np.int64).tobytes())
        else:
            h.update(f"{self.source.record_format}|{self.source.field_map}".encode())
            sink = pa.BufferOutputStream()
            with pa.ipc.new_stream(sink, self.table.schema) as writer:
                writer.write_table(self.table)
            h.update(sink.getvalue().to_pybytes())
        return h.hexdigest()

    def ids_of(self, rows: np.ndarray) -> np.ndarray:
        """Ids of some rows; derived ids are only hashed for these rows."""
        rows = np.asarray(rows, dtype=np.int64)
        if self._ids is not None:
            return np.asarray(self._ids.take(pa.array(rows)).to_numpy(zero_copy_only=False), dtype=object)
        if self._derived is None:
            from thresher.data.ids import DerivedIds

            self._derived = DerivedIds(self)
        return self._derived.of(rows)

    def id_array(self) -> pa.Array:
        self.ids  # noqa: B018  (computes and caches)
        return self._ids

    # -- columns ---------------------------------------------------------
    def has(self, name: str) -> bool:
        return name in self.table.column_names or name in CANONICAL

    def column(self, name: str) -> pa.ChunkedArray | pa.Array:
        """An original column, or a canonical one (`id`, `messages`, `prompt`, `response`)."""
        if name in self.table.column_names:
            return self.table.column(name)
        if name == "id":
            return self.id_array()
        if name in ("messages", "prompt", "response"):
            if name not in self._canonical:
                from thresher.data.formats import canonical_columns

                self._canonical.update(canonical_columns(self, name))
            return self._canonical[name]
        raise UsageError(f"{self.source.path}: no field '{name}' (fields: {', '.join(self.fields)})")

    def numeric(self, name: str) -> np.ndarray:
        """A column as float64 (nulls become NaN); a clear error if it is not numeric."""
        col = self.column(name)
        typ = col.type
        if pa.types.is_string(typ) or pa.types.is_large_string(typ):
            try:
                col = pc.cast(col, pa.float64())
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
                bad = _first_unparsable_number(col)
                raise UsageError(
                    f"{self.source.path}: field '{name}' must be numeric; row {bad[0] + 1} has {bad[1]!r}"
                ) from None
        elif not (pa.types.is_integer(typ) or pa.types.is_floating(typ) or pa.types.is_boolean(typ)):
            raise UsageError(f"{self.source.path}: field '{name}' must be numeric, it is {typ}")
        arr = pc.cast(col, pa.float64())
        if isinstance(arr, pa.ChunkedArray):
            arr = arr.combine_chunks()
        return arr.to_numpy(zero_copy_only=False).astype(np.float64, copy=False)

    def categorical(self, names: Sequence[str]) -> tuple[np.ndarray, list[str]]:
        """Cell codes (int64 per row) and cell labels for one or several fields.

        Several fields make multi-dimensional cells labelled "a|b". Labels are
        sorted, so codes do not depend on row order. Nulls become "(missing)".
        """
        if not names:
            raise UsageError("give at least one field for strata/categories")
        raw, lookup, labels = self._labels_of(names[0])
        for name in names[1:]:
            # Combine per-field codes into one integer per row; only the
            # observed combinations get a string label.
            more_raw, more_lookup, more_labels = self._labels_of(name)
            width = len(more_labels)
            pair = lookup[raw] * width + more_lookup[more_raw]
            if len(labels) * width <= 4 * len(pair) + 1024:
                seen = np.flatnonzero(np.bincount(pair, minlength=len(labels) * width))
                lookup = np.zeros(len(labels) * width, dtype=np.int64)
                lookup[seen] = np.arange(len(seen))
                raw = pair
            else:
                seen, raw = np.unique(pair, return_inverse=True)
                lookup = np.arange(len(seen))
            labels = [f"{labels[s // width]}|{more_labels[s % width]}" for s in seen.tolist()]
        # Sort (and merge equal) label strings; one pass renumbers the rows.
        uniques, rank = np.unique(np.asarray(labels, dtype=str), return_inverse=True)
        return rank.astype(np.int64)[lookup][raw], uniques.tolist()

    def _labels_of(self, name: str) -> tuple[np.ndarray, np.ndarray, list[str]]:
        """One field as (raw code per row, lookup raw code -> label index,
        labels): labels are the observed values as strings, nulls as
        "(missing)", unsorted."""
        col = self.column(name)
        if isinstance(col, pa.ChunkedArray):
            col = col.chunk(0) if col.num_chunks == 1 else col.combine_chunks()
        if pa.types.is_nested(col.type):
            raise UsageError(f"{self.source.path}: field '{name}' is {col.type}; a category must be a scalar")
        typ = col.type
        if (pa.types.is_integer(typ) and (pa.types.is_signed_integer(typ) or typ.bit_width <= 32)
                and col.null_count == 0 and len(col)):
            # Integers in a modest range: a counting pass instead of hashing.
            bounds = pc.min_max(col)
            low, high = bounds["min"].as_py(), bounds["max"].as_py()
            base = 0 if low >= 0 else low
            if high - base < 4 * len(col) + 1024:
                values = col.to_numpy()
                raw = values if base == 0 else values.astype(np.int64) - base
                used = np.flatnonzero(np.bincount(raw))
                lookup = np.zeros(high - base + 1, dtype=np.int64)
                lookup[used] = np.arange(len(used))
                labels = pc.cast(pa.array(used + base, pa.int64()).cast(typ), pa.string()).to_pylist()
                return raw, lookup, labels
        # Dictionary-encode the raw values (a hash pass) and stringify only the
        # dictionary: far cheaper than sorting a million strings.
        given = pa.types.is_dictionary(typ)
        encoded = col if given else pc.dictionary_encode(col)
        dictionary = encoded.dictionary
        if not (pa.types.is_string(dictionary.type) or pa.types.is_large_string(dictionary.type)):
            dictionary = pc.cast(dictionary, pa.string())
        labels = [MISSING_LABEL if v is None else v for v in dictionary.to_pylist()]
        indices = encoded.indices
        if indices.null_count:
            labels.append(MISSING_LABEL)
            indices = pc.fill_null(indices, len(labels) - 1)
        raw = indices.to_numpy(zero_copy_only=False)
        lookup = np.arange(len(labels))
        if given:  # a given dictionary may hold values no row uses
            used = np.flatnonzero(np.bincount(raw, minlength=len(labels)))
            if len(used) < len(labels):
                lookup = np.zeros(len(labels), dtype=np.int64)
                lookup[used] = np.arange(len(used))
                labels = [labels[i] for i in used.tolist()]
        return raw, lookup, labels

    # -- subsetting ------------------------------------------------------
    def take(self, indices: np.ndarray) -> "Dataset":
        idx = pa.array(np.asarray(indices, dtype=np.int64))
        ids = self.id_array().take(idx) if self._ids is not None else None
        canonical = {k: v.take(idx) for k, v in self._canonical.items()}
        raw = self.raw.take(np.asarray(indices, dtype=np.int64)) if self.raw is not None else None
        return Dataset(
            self.table.take(idx),
            self.source,
            ids=ids,
            canonical=canonical,
            raw=raw,
            origin_rows=self.origin_rows[np.asarray(indices, dtype=np.int64)],
        )

    def in_memory(self) -> "Dataset":
        """This Dataset with every column and the original bytes in this process
        (itself; a pool read shard by shard reads its rows back from the shards)."""
        return self

    def in_memory_pieces(self) -> "Iterator[Dataset]":
        """`in_memory()` in consecutive pieces, for writers that can stream them."""
        yield self.in_memory()

    def with_source(self, **changes) -> "Dataset":
        out = Dataset(self.table, replace(self.source, **changes), ids=self._ids,
                      canonical=self._canonical, raw=self.raw, origin_rows=self.origin_rows)
        return out


class RawRecords:
    """The original bytes of each row (JSONL lines / CSV records), so a subset
    can be written back byte-for-byte. `buffer` is the whole file, `starts`
    and `ends` delimit each row (without its line terminator)."""

    def __init__(self, buffer: bytes | memoryview, starts: np.ndarray, ends: np.ndarray, header: bytes = b""):
        self.buffer = buffer
        self.starts = np.asarray(starts, dtype=np.int64)
        self.ends = np.asarray(ends, dtype=np.int64)
        self.header = header

    def take(self, indices: np.ndarray) -> "RawRecords":
        return RawRecords(self.buffer, self.starts[indices], self.ends[indices], self.header)

    def __len__(self) -> int:
        return len(self.starts)

    def rows(self) -> list[bytes]:
        buf = self.buffer
        return [buf[s:e] for s, e in zip(self.starts.tolist(), self.ends.tolist())]

    def row(self, i: int) -> bytes:
        return bytes(self.buffer[self.starts[i]:self.ends[i]])


def _first_unparsable_number(col) -> tuple[int, str]:
    values = col.to_pylist()
    for i, v in enumerate(values):
        if v is None:
            continue
        try:
            float(v)
        except ValueError:
            return i, v
    return 0, ""


def normalize_table(table: pa.Table, source, record_format: str | None = None,
                    field_map: dict[str, str] | None = None):
    """A validated Dataset over `table` (raises InputError on the first bad row)."""
    from thresher.data.formats import detect_format, validate_table
    from thresher.errors import InputError

    field_map = field_map or {}
    fmt = detect_format(table.column_names, source.path, record_format, field_map)
    problems = validate_table(table, fmt, field_map)
    if problems:
        p = problems[0]
        raise InputError(source.path, p.reason, line=p.row + 1, field=p.field)
    return Dataset(table, replace(source, record_format=fmt, field_map=tuple(sorted(field_map.items()))))
