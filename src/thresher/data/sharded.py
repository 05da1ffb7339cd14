"""`ShardedDataset`: a pool whose texts stay in its shards.

`open_sharded` reads a JSONL or Parquet file the way `read_dataset` does,
but each shard is parsed on a worker (`map_shards`, the executor's) and only
a summary comes back: the small columns (every column a record format does
not read its texts from), the origins and the ids. The driver then makes the
whole-file decisions: the first bad line (or the rejects), duplicate given
ids, occurrence numbers of derived ids, the record format of the union of
columns. The result is a `Dataset` with the same rows, ids, origins and
fingerprint as the whole-file read, so feature caches, steps and manifests
are shared. Texts are read again on workers where they are needed (the
FeatureStore's parts, the subset's rows); a step that asks the driver for a
text column gets it gathered from the shards, with a warning.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

import numpy as np
import pyarrow as pa

from thresher.data.dataset import CANONICAL, Dataset, RawRecords, Source
from thresher.data.formats import Problem, detect_format
from thresher.data.readers import ReadResult, _check_input_path, _with_unit, check_on_error, detect_file_format
from thresher.data.shards import (CONTENT_HASH, ORIGIN, SHARD_BYTES, SHARDABLE, Shard, ShardSummary, content_fields,
                                  load_shard, plan_shards, rejects_of, shard_dataset, summarize_shard)
from thresher.errors import InputError, UsageError

log = logging.getLogger(__name__)

# map_shards(fn, items, *args): fn(item, *args) for each item, results in item order
MapShards = Callable[..., Iterator[Any]]


def can_shard(path: str | Path, file_format: str | None = None) -> bool:
    """Whether `path` is a file `open_sharded` can split (JSONL or Parquet)."""
    path = Path(path)
    try:
        return path.is_file() and detect_file_format(path, file_format) in SHARDABLE
    except UsageError:
        return False


def open_sharded(path: str | Path, map_shards: MapShards, *, file_format: str | None = None,
                 record_format: str | None = None, field_map: dict[str, str] | None = None,
                 on_error: str = "raise", shard_bytes: int = SHARD_BYTES) -> ReadResult:
    """`read_dataset(path, ...)`'s result, read shard by shard through `map_shards`."""
    check_on_error(on_error)
    path = Path(path)
    _check_input_path(path)
    fmt = detect_file_format(path, file_format)
    if fmt not in SHARDABLE:
        raise UsageError(f"{path}: a {fmt} file is read whole; sharded reading takes {', '.join(SHARDABLE)}")
    field_map = field_map or {}
    try:
        shards, sha = plan_shards(path, fmt, shard_bytes)
    except OSError as err:
        raise InputError(str(err.filename or path), f"cannot read ({err.strerror or err})") from None
    rfmt = record_format or _detect(path, shards, field_map)
    summaries = list(map_shards(summarize_shard, shards, rfmt, field_map))
    columns = _union_columns(summaries)
    if not record_format and columns and detect_format(columns, str(path), None, field_map) != rfmt:
        raise UsageError(f"{path}: the first shard reads as {rfmt} records but the whole file does not; "
                         "pass --format")
    return _assemble(path, sha, fmt, rfmt, field_map, on_error, shards, summaries, columns, map_shards)


def _detect(path: Path, shards: list[Shard], field_map: dict[str, str]) -> str:
    """The record format, from the first shard that has rows (read here)."""
    for shard in shards:
        table = load_shard(shard).table
        if table.num_rows:
            return detect_format(table.column_names, str(path), None, field_map)
    return "unknown"


def _union_columns(summaries: list[ShardSummary]) -> list[str]:
    seen: dict[str, None] = {}
    for s in summaries:
        seen.update(dict.fromkeys(s.columns))
    return list(seen)


def _assemble(path, sha, fmt, rfmt, field_map, on_error, shards, summaries, columns, map_shards) -> ReadResult:
    unit = summaries[0].unit if summaries else "line"
    problems = [p for s in summaries for p in s.problems]
    id_problems = _id_problems(summaries, unit)
    problems = sorted(problems + id_problems, key=lambda p: p.row)
    if not problems and not any(len(s.parsed_origins) for s in summaries):
        raise InputError(str(path), "the file is empty (no records)" if fmt == "jsonl" else
                         "no records (the input is empty)")
    if problems and on_error == "raise":
        p = problems[0]
        raise InputError(str(path), p.reason, field=p.field, **{unit: p.row})
    drop = np.array(sorted({p.row for p in id_problems}), np.int64)
    small = _small_table(summaries, drop)
    if small.num_rows == 0:
        raise InputError(str(path), f"no valid records ({len(rejects_of(problems, unit, {}))} rejected)")
    raw_text = {k: v for s in summaries for k, v in s.raw_text.items()}
    _place(shards, summaries, drop)
    if len(drop):
        raw_text.update(_raw_lines(shards, drop, map_shards))
    origins = small.column(ORIGIN).to_numpy()
    ids = _ids(small)
    small = small.drop_columns([c for c in (ORIGIN, CONTENT_HASH) if c in small.column_names])
    source = Source(str(path), sha, fmt, rfmt, tuple(sorted(field_map.items())))
    ds = ShardedDataset(small, source, ids=ids, origin_rows=origins, shards=shards, columns=columns,
                        map_shards=map_shards)
    return ReadResult(ds, rejects_of(problems, unit, raw_text))


def _id_problems(summaries: list[ShardSummary], unit: str) -> list[Problem]:
    """Duplicate / bad given ids over the whole file, as `read_dataset` finds them."""
    from thresher.data.ids import check_given_ids

    pieces = [s.given_ids for s in summaries if s.given_ids is not None]
    if not pieces:
        return []
    ids = pa.chunked_array(pieces).combine_chunks() if len({p.type for p in pieces}) == 1 else \
        pa.concat_arrays([p.cast(pa.string()) for p in pieces])
    origins = np.concatenate([s.parsed_origins for s in summaries if s.given_ids is not None])
    return [Problem(int(origins[p.row]), p.field, _with_unit(p.reason, unit, origins)) for p in check_given_ids(ids)]


def _small_table(summaries: list[ShardSummary], drop: np.ndarray) -> pa.Table:
    tables = [s.small for s in summaries if s.small.num_rows]
    if not tables:
        return pa.table({ORIGIN: pa.array([], pa.int64())})
    small = pa.concat_tables(tables, promote_options="permissive")
    if len(drop):
        small = small.filter(pa.array(~np.isin(small.column(ORIGIN).to_numpy(), drop)))
    return small


def _place(shards: list[Shard], summaries: list[ShardSummary], drop: np.ndarray) -> None:
    """Each shard's dropped origins, kept row count and first row in the pool."""
    row = 0
    for shard, summary in zip(shards, summaries):
        origins = summary.small.column(ORIGIN).to_numpy()
        shard.drop = drop[np.isin(drop, origins)]
        shard.row_start, shard.rows = row, len(origins) - len(shard.drop)
        row += shard.rows


def _raw_lines(shards: list[Shard], origins: np.ndarray, map_shards: MapShards) -> dict[int, str]:
    """The raw text of rows the driver rejected (for the rejects file)."""
    wanted = [s for s in shards if len(s.drop)]
    out: dict[int, str] = {}
    for piece in map_shards(_shard_raw_lines, wanted):
        out.update(piece)
    return out


def _shard_raw_lines(shard: Shard) -> dict[int, str]:
    loaded = load_shard(shard)
    if loaded.raw is None:
        return {}
    hit = np.flatnonzero(np.isin(loaded.origin, shard.drop))
    return {int(loaded.origin[i]): loaded.raw.row(int(i)).decode("utf-8", "replace") for i in hit}


def _ids(small: pa.Table) -> pa.Array:
    """Given ids as strings, or derived ones (`ids.with_occurrences`, numbered
    over the whole file)."""
    import pyarrow.compute as pc

    from thresher.data.ids import _occurrence_numbers, given_ids, with_occurrences

    if "id" in small.column_names:
        return given_ids(small).cast(pa.string())
    hashes = small.column(CONTENT_HASH).combine_chunks()
    codes = pc.dictionary_encode(hashes).indices.to_numpy(zero_copy_only=False).astype(np.int64)
    ids = with_occurrences(hashes.to_numpy(zero_copy_only=False), _occurrence_numbers(codes))
    return pa.array(ids, pa.string())


class ShardedRows(Dataset):
    """Rows of a pool read shard by shard (row i: row `local[i]` of shard part
    `owner[i]`; any order, repeats allowed), with the small columns here and
    the texts in the shards. `in_memory()` reads the rows back (on the
    workers); a text column asked for here is gathered, with a warning."""

    def __init__(self, table: pa.Table, source: Source, *, ids: pa.Array, origin_rows: np.ndarray,
                 parts: list["ShardPart"] | None, owner: np.ndarray | None, local: np.ndarray | None,
                 columns: list[str], map_shards: MapShards):
        super().__init__(table, source, ids=ids, origin_rows=origin_rows)
        self._parts, self.owner, self.local = parts, owner, local
        self.all_columns, self.map_shards = columns, map_shards
        self._loaded: Dataset | None = None
        self._gathered: dict[str, pa.Array] = {}

    @property
    def fields(self) -> list[str]:
        return list(self.all_columns)

    def has(self, name: str) -> bool:
        return name in self.all_columns or name in CANONICAL

    def shard_parts(self) -> list["ShardPart"]:
        return self._parts

    def column(self, name: str):
        if name in self.table.column_names or name == "id":
            return super().column(name)
        if name not in self.all_columns and name not in CANONICAL:
            return super().column(name)  # the usual "no field" error
        if self._loaded is not None:
            return self._loaded.column(name)
        if name not in self._gathered:
            log.warning("%s: gathering column %r of %d rows from their shards to this process",
                        self.source.path, name, len(self))
            work, back = self._work()
            tables = list(self.map_shards(shard_row_columns, work or self._no_rows(), [name]))
            column = _concat(tables, name)
            self._gathered[name] = column if back is None else column.take(pa.array(back))
        return self._gathered[name]

    def take(self, indices: np.ndarray) -> "ShardedRows":
        """The rows at `indices` (any order, repeats allowed), texts still in the
        shards: steps pass subsets along without reading them back."""
        indices = np.asarray(indices, np.int64)
        owner, local = self._where(indices)
        idx = pa.array(indices)
        return ShardedRows(self.table.take(idx), self.source, ids=self.id_array().take(idx),
                           origin_rows=self.origin_rows[indices], parts=self.shard_parts(), owner=owner,
                           local=local, columns=self.all_columns, map_shards=self.map_shards)

    def in_memory(self) -> Dataset:
        """These rows as an in-memory Dataset (original columns and bytes), read
        from their shards by the workers: only these rows come here."""
        if self._loaded is None:
            work, back = self._work()
            subset = _join(list(self.map_shards(shard_rows, work or self._no_rows())), self.source)
            self._loaded = subset if back is None else subset.take(back)
        return self._loaded

    def in_memory_pieces(self) -> Iterator[Dataset]:
        """A shard's rows at a time, as they come back, when the rows are in
        shard order (a subset in pool order); otherwise all of them at once."""
        if self._loaded is not None:
            yield self._loaded
            return
        work, back = self._work()
        if back is not None or not work:
            yield self.in_memory()
            return
        for piece in self.map_shards(shard_rows, work):
            yield piece

    def _where(self, indices: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return self.owner[indices], self.local[indices]

    def _no_rows(self) -> list[tuple["ShardPart", np.ndarray]]:
        """None of the first shard's rows: an empty subset still has every column."""
        return [(self.shard_parts()[0], np.zeros(0, np.int64))]

    def _work(self) -> tuple[list[tuple["ShardPart", np.ndarray]], np.ndarray | None]:
        """(shard part, its rows) in shard order, and the permutation back to
        this order (None when the rows already come in shard order)."""
        order = np.argsort(self.owner, kind="stable")
        owners = self.owner[order]
        cuts = np.flatnonzero(np.r_[True, owners[1:] != owners[:-1]]) if len(order) else np.zeros(0, np.int64)
        work = [(self.shard_parts()[int(owners[a])], self.local[order[a:b]])
                for a, b in zip(cuts, np.r_[cuts[1:], len(order)].astype(np.int64))]
        if np.array_equal(order, np.arange(len(order))):
            return work, None
        back = np.empty(len(order), np.int64)
        back[order] = np.arange(len(order))
        return work, back


class ShardedDataset(ShardedRows):
    """The whole pool read shard by shard: `table` holds the small columns,
    the texts stay in the shards. Rows, ids, origins and fingerprint equal
    the whole-file read's; each shard is a FeatureStore part (`shards`)."""

    def __init__(self, table: pa.Table, source: Source, *, ids: pa.Array, origin_rows: np.ndarray,
                 shards: list[Shard], columns: list[str], map_shards: MapShards):
        super().__init__(table, source, ids=ids, origin_rows=origin_rows, parts=None, owner=None, local=None,
                         columns=columns, map_shards=map_shards)
        self.shards = [s for s in shards if s.rows]
        self._starts = np.array([s.row_start for s in self.shards], np.int64)

    def remote_columns(self) -> list[str]:
        fmap = dict(self.source.field_map)
        return content_fields(self.source.record_format, fmap, self.all_columns)

    def shard_parts(self) -> list["ShardPart"]:
        """One picklable reader per shard: what a worker needs to rebuild its rows."""
        if self._parts is None:
            ids = self.id_array()
            self._parts = [ShardPart(s, self.source, compact(ids.slice(s.row_start, s.rows))) for s in self.shards]
        return self._parts

    def _where(self, indices: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        owner = np.searchsorted(self._starts, indices, side="right") - 1
        return owner, indices - self._starts[owner] if len(indices) else indices

    def _work(self) -> tuple[list[tuple["ShardPart", np.ndarray]], None]:
        return [(part, np.arange(part.num_rows)) for part in self.shard_parts()], None


class ShardPart:
    """A shard plus what its rows need from the pool (the ids): picklable, small."""

    def __init__(self, shard: Shard, source: Source, ids: pa.Array):
        self.shard, self.source, self.ids = shard, source, ids

    @property
    def num_rows(self) -> int:
        return self.shard.rows

    def dataset(self) -> Dataset:
        return shard_dataset(self.shard, self.source, self.ids)

    def columns(self, names: Iterable[str]) -> pa.Table:
        ds = self.dataset()
        names = list(names)
        return pa.Table.from_arrays([_array(ds.column(n)) for n in names], names=names)


def shard_row_columns(item: tuple[ShardPart, np.ndarray], names: list[str]) -> pa.Table:
    part, rows = item
    ds = part.dataset().take(rows)
    return pa.Table.from_arrays([_array(ds.column(n)) for n in names], names=names)


def shard_rows(item: tuple[ShardPart, np.ndarray]) -> Dataset:
    """Some rows of a shard, holding only their own bytes (they are sent back to the driver)."""
    part, rows = item
    sub = part.dataset().take(rows)
    if sub.raw is not None:
        sub.raw = _compact_raw([sub.raw])
    return sub


def _compact_raw(raws: list[RawRecords]) -> RawRecords:
    """The rows of `raws` in one buffer of just their bytes (a taken RawRecords
    still points into its whole shard's buffer)."""
    rows = [r for raw in raws for r in raw.rows()]
    lengths = np.fromiter((len(r) for r in rows), np.int64, len(rows))
    ends = np.cumsum(lengths)
    return RawRecords(b"".join(bytes(r) for r in rows), ends - lengths, ends)


def _join(pieces: list[Dataset], source: Source) -> Dataset:
    table = pa.concat_tables([p.table for p in pieces], promote_options="permissive")
    ids = pa.concat_arrays([p.id_array() for p in pieces])
    raw = _compact_raw([p.raw for p in pieces]) if all(p.raw is not None for p in pieces) else None
    origins = np.concatenate([p.origin_rows for p in pieces])
    return Dataset(table, source, ids=ids, raw=raw, origin_rows=origins)


def compact(array: pa.Array) -> pa.Array:
    """A copy of a slice that holds only its own rows: a pickled slice carries
    its parent's whole buffers (every shard's task would get the whole column)."""
    return pa.concat_arrays([array])


def _array(col) -> pa.Array:
    if isinstance(col, pa.ChunkedArray):
        return col.combine_chunks() if col.num_chunks else pa.array([], col.type)
    return col


def _concat(tables: list[pa.Table], name: str) -> pa.Array:
    arrays = [_array(t.column(name)) for t in tables]
    if len({a.type for a in arrays}) > 1:
        return pa.concat_tables(tables, promote_options="permissive").column(name).combine_chunks()
    return pa.concat_arrays(arrays)
