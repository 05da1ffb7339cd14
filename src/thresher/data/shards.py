"""A pool read shard by shard, with the rows, ids, line numbers and
fingerprint of reading the whole file at once.

The driver plans the shards in one streaming pass (`plan_shards`: the file's
sha256, and byte ranges of a JSONL file cut just after a newline, or runs of
a Parquet file's row groups); workers then read and parse one shard each
(`summarize_shard`, `shard_dataset`), so no process holds the whole file.
What must be global (duplicate given ids, the occurrence numbers of
content-derived ids, the first bad line) is decided on the driver from the
small per-shard summaries (`thresher.data.sharded`).
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa

from thresher.data.dataset import Dataset, Source
from thresher.data.formats import ROLES, Problem, validate_table
from thresher.data.readers import Reject, _Loaded, _raw_of, load_jsonl_bytes
from thresher.errors import InputError

SHARD_BYTES = 32 << 20  # ~50k chat rows: one shard is one FeatureStore part
SHARDABLE = ("jsonl", "parquet")
ORIGIN = "__thresher_origin"
CONTENT_HASH = "__thresher_content_hash"
_READ_BLOCK = 16 << 20


@dataclass
class Shard:
    """One piece of the input file. JSONL: bytes [start, stop), after
    `before` lines. Parquet: row groups [start, stop), after `before` rows.
    `drop` holds the origins (line / record numbers) the driver rejected for
    reasons a shard cannot see alone (a given id repeated in another shard);
    `row_start`/`rows` place the shard's kept rows in the pool."""

    path: str
    file_format: str
    index: int
    start: int
    stop: int
    before: int
    drop: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    row_start: int = 0
    rows: int = 0


def plan_shards(path: str | Path, file_format: str, shard_bytes: int = SHARD_BYTES) -> tuple[list[Shard], str]:
    """The shards of `path` and its sha256 (the same digest `read_dataset` gives)."""
    path = Path(path)
    if file_format == "jsonl":
        return _plan_jsonl(path, shard_bytes)
    if file_format == "parquet":
        return _plan_parquet(path, shard_bytes)
    raise ValueError(f"cannot shard a {file_format} file; shardable: {', '.join(SHARDABLE)}")


def _plan_jsonl(path: Path, shard_bytes: int) -> tuple[list[Shard], str]:
    """Cuts at the first newline at or after every `shard_bytes` boundary, one
    read of the file (its newlines are counted for the shards' line numbers)."""
    digest, cuts, lines = hashlib.sha256(), [(0, 0)], 0
    target, offset = shard_bytes, 0
    with path.open("rb") as f:
        while chunk := f.read(_READ_BLOCK):
            digest.update(chunk)
            searched = 0
            while target < offset + len(chunk):
                newline = chunk.find(b"\n", max(target - offset, searched))
                if newline < 0:
                    break
                lines += chunk.count(b"\n", searched, newline + 1)
                searched = newline + 1
                cuts.append((offset + newline + 1, lines))
                target = offset + newline + 1 + shard_bytes
            lines += chunk.count(b"\n", searched)
            offset += len(chunk)
    if cuts[-1][0] >= offset and len(cuts) > 1:
        cuts.pop()  # the last newline ends the file: no empty shard after it
    bounds = [c[0] for c in cuts] + [offset]
    shards = [Shard(str(path), "jsonl", i, bounds[i], bounds[i + 1], cuts[i][1]) for i in range(len(cuts))]
    return shards, digest.hexdigest()


def _plan_parquet(path: Path, shard_bytes: int) -> tuple[list[Shard], str]:
    import pyarrow.parquet as pq

    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(_READ_BLOCK):
            digest.update(chunk)
    try:
        meta = pq.ParquetFile(path).metadata
    except (pa.ArrowInvalid, OSError) as err:
        raise InputError(str(path), f"not a readable Parquet file ({err})") from None
    shards, first, size, rows_before, rows = [], 0, 0, 0, 0
    for g in range(meta.num_row_groups):
        group = meta.row_group(g)
        size, rows = size + group.total_byte_size, rows + group.num_rows
        if size >= shard_bytes or g == meta.num_row_groups - 1:
            shards.append(Shard(str(path), "parquet", len(shards), first, g + 1, rows_before))
            first, size, rows_before, rows = g + 1, 0, rows_before + rows, 0
    if not shards:
        shards.append(Shard(str(path), "parquet", 0, 0, 0, 0))
    return shards, digest.hexdigest()


def load_shard(shard: Shard) -> _Loaded:
    """The shard's records as the whole-file reader would have them (origins are the file's)."""
    if shard.file_format == "jsonl":
        with open(shard.path, "rb") as f:
            f.seek(shard.start)
            buf = f.read(shard.stop - shard.start)
        return load_jsonl_bytes(buf, shard.before)
    import pyarrow.parquet as pq

    table = pq.ParquetFile(shard.path).read_row_groups(range(shard.start, shard.stop)) \
        if shard.stop > shard.start else pa.table({})
    return _Loaded(table, shard.before + np.arange(1, table.num_rows + 1), "record", None, "", [])


@dataclass
class ShardSummary:
    """What the driver needs from one shard to assemble the pool: the shard's
    problems (with their raw text), the given ids of every parsed row (for the
    global duplicate check), its column names, and its format-valid rows'
    small columns (plus each row's origin and, without an `id` column, the
    hash its derived id starts with)."""

    index: int
    columns: list[str]
    unit: str
    parsed_origins: np.ndarray
    given_ids: pa.Array | None
    problems: list[Problem]
    raw_text: dict[int, str]
    small: pa.Table


def content_fields(record_format: str, field_map: dict[str, str], columns: list[str]) -> list[str]:
    """The columns a record format reads its texts from: these stay on the
    workers; every other column is small enough to gather."""
    if record_format not in ROLES:
        return []
    required, optional = ROLES[record_format]
    return [field_map.get(r, r) for r in required + optional if field_map.get(r, r) in columns]


def summarize_shard(shard: Shard, record_format: str, field_map: dict[str, str]) -> ShardSummary:
    """One shard read, validated and boiled down to a `ShardSummary` (a derived
    id's content hash here; the driver adds occurrence numbers across shards)."""
    from thresher.data.ids import content_hashes, content_keys, given_ids

    loaded = load_shard(shard)
    table = loaded.table
    columns = list(table.column_names)
    problems = [Problem(int(loaded.origin[p.row]), p.field, p.reason)
                for p in validate_table(table, record_format, field_map)] if table.num_rows else []
    raw_text = dict(loaded.raw_text)
    for p in problems:
        raw_text.setdefault(p.row, _raw_of(loaded, p.row))
    ids = given_ids(table) if "id" in columns and table.num_rows else None
    valid = ~np.isin(loaded.origin, np.array([p.row for p in problems], np.int64))
    kept = table.filter(pa.array(valid)) if not valid.all() else table
    small = kept.drop_columns(content_fields(record_format, field_map, columns))
    small = small.append_column(ORIGIN, pa.array(loaded.origin[valid], pa.int64()))
    if ids is None and kept.num_rows:
        rows = Dataset(kept, Source(shard.path, record_format=record_format,
                                    field_map=tuple(sorted(field_map.items()))))
        small = small.append_column(CONTENT_HASH, pa.array(content_hashes(content_keys(rows)), pa.string()))
    return ShardSummary(shard.index, columns, loaded.unit, loaded.origin, ids, loaded.problems + problems,
                        raw_text, small)


def shard_dataset(shard: Shard, source: Source, ids: pa.Array) -> Dataset:
    """The shard's kept rows as a Dataset (original columns and bytes, the
    pool's ids and origins), exactly those rows of the whole-file read."""
    loaded = load_shard(shard)
    table, raw, origin = loaded.table, loaded.raw, loaded.origin
    fmap = dict(source.field_map)
    bad = [p.row for p in validate_table(table, source.record_format, fmap)] if table.num_rows else []
    drop = np.concatenate([origin[np.asarray(bad, np.int64)], shard.drop]) if bad else shard.drop
    if len(drop):
        keep = np.flatnonzero(~np.isin(origin, drop))
        table, origin = table.take(pa.array(keep)), origin[keep]
        raw = raw.take(keep) if raw is not None else None
    if table.num_rows != len(ids):
        raise InputError(shard.path, f"shard {shard.index} (bytes/row groups {shard.start}-{shard.stop}) now reads "
                                     f"{table.num_rows} rows, planned {len(ids)}: was the file changed while in use?")
    return Dataset(table, source, ids=ids, raw=raw, origin_rows=origin)


def rejects_of(problems: list[Problem], unit: str, raw_text: dict[int, str]) -> list[Reject]:
    from thresher.data.formats import first_per_row

    return [Reject(f"{unit} {p.row}", p.field, p.reason, raw_text.get(p.row))
            for p in first_per_row(sorted(problems, key=lambda p: p.row))]
