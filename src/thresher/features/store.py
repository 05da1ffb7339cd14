"""`FeatureStore`: computed feature columns cached on disk as Parquet parts.

Layout::

    <cache>/features/<dataset fingerprint>/<name>-<version>-<params hash>/
        _meta.json                 what this entry is (name, params, chunking)
        part-00000.parquet         rows [0, chunk)
        part-00001.parquet         rows [chunk, 2*chunk) ...
        _SUCCESS                   written last: the entry is complete

A row featurizer is computed chunk by chunk and every part is written
atomically (temp file + rename), so an interrupted run resumes at the first
missing part; an entry with ``_SUCCESS`` is read, never recomputed. A global
featurizer writes a single part. The cache root is ``cache_dir``, else
``$THRESHER_CACHE``, else ``~/.cache/thresher``.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import weakref
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from thresher.data.writers import atomic_path
from thresher.errors import ThresherError, UsageError
from thresher.features.base import Featurizer
from thresher.features.execution import LOCAL, current_executor

log = logging.getLogger(__name__)

DEFAULT_CHUNK_ROWS = 50_000
CHECKPOINTS = "_partial"  # an unfinished global entry's resumable work (near-dup signatures)
Progress = Callable[[str, int, int], None]  # (featurizer name, rows done, rows total)
_FINGERPRINTS: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


def default_cache_dir() -> Path:
    """`$THRESHER_CACHE`, else `~/.cache/thresher`."""
    env = os.environ.get("THRESHER_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "thresher"


@dataclass
class CacheStats:
    """What the store did: entries read whole from disk (hits), entries computed
    in whole or part (misses), parts computed, parts reused by a resumed run."""

    hits: int = 0
    misses: int = 0
    parts_computed: int = 0
    parts_resumed: int = 0
    computed: list[str] = field(default_factory=list)

    def as_dict(self) -> dict:
        return {"hits": self.hits, "misses": self.misses, "parts_computed": self.parts_computed,
                "parts_resumed": self.parts_resumed}


class FeatureStore:
    """Computes featurizers over a Dataset, caching their columns on disk."""

    def __init__(self, cache_dir: str | os.PathLike | None = None, chunk_rows: int = DEFAULT_CHUNK_ROWS):
        if isinstance(chunk_rows, bool) or not isinstance(chunk_rows, int) or chunk_rows < 1:
            raise UsageError(f"chunk_rows must be a positive integer, got {chunk_rows!r}")
        self.cache_dir = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
        self.chunk_rows = chunk_rows
        self.stats = CacheStats()

    @property
    def root(self) -> Path:
        return self.cache_dir / "features"

    # -- public ------------------------------------------------------------
    def get(self, ds, featurizer: Featurizer, progress: Progress | None = None) -> pa.Table:
        """The featurizer's columns for every row of `ds`, in row order;
        computed (and cached) where the cache does not already hold them."""
        deps = [(d, self.get(ds, d, progress)) for d in featurizer.depends_on()]
        entry = self.entry_dir(ds, featurizer)
        if (entry / "_SUCCESS").is_file():
            table = self._read(entry, featurizer, len(ds))
            if table is not None:
                self.stats.hits += 1
                return table
            log.warning("cache entry %s is damaged; recomputing it", entry)
            shutil.rmtree(entry, ignore_errors=True)
        self.stats.misses += 1
        self.stats.computed.append(featurizer.name)
        return self._compute(ds, featurizer, entry, [t for _, t in deps], progress)

    def entry_dir(self, ds, featurizer: Featurizer) -> Path:
        """The folder that holds (or will hold) `featurizer`'s columns for `ds`."""
        return self.root / dataset_fingerprint(ds) / featurizer.key(_dependency_keys(featurizer))

    def is_cached(self, ds, featurizer: Featurizer) -> bool:
        return (self.entry_dir(ds, featurizer) / "_SUCCESS").is_file()

    def clear(self, fingerprint: str | None = None) -> int:
        """Delete the cached features of one dataset (or of all); the number of
        entries removed."""
        target = self.root if fingerprint is None else self.root / fingerprint
        if not target.exists():
            return 0
        if fingerprint is None:
            removed = sum(1 for d in target.glob("*/*") if d.is_dir())
        else:
            removed = sum(1 for d in target.iterdir() if d.is_dir())
        shutil.rmtree(target)
        return removed

    # -- computing ---------------------------------------------------------
    def _compute(self, ds, featurizer: Featurizer, entry: Path, deps: list[pa.Table],
                 progress: Progress | None) -> pa.Table:
        n = len(ds)
        meta = self._meta(entry, featurizer, n, _shard_rows(ds, featurizer))
        spans = _spans(n, meta, featurizer.scope)
        parts: list[pa.Table | None] = []
        for i, (start, stop) in enumerate(spans):
            path = entry / f"part-{i:05d}.parquet"
            parts.append(_read_part(path, stop - start, featurizer.columns) if path.is_file() else None)
        self.stats.parts_resumed += sum(p is not None for p in parts)
        todo = ((i, _input_part(ds, featurizer, deps, i, spans[i], entry)) for i, p in enumerate(parts) if p is None)
        for i, part in self._run(featurizer, todo):
            _write_atomic(part, entry / f"part-{i:05d}.parquet")  # at once: a killed run resumes after it
            self.stats.parts_computed += 1
            parts[i] = part
            if progress is not None:
                progress(featurizer.name, spans[i][1], n)
        with atomic_path(entry / "_SUCCESS") as tmp:
            tmp.write_text(json.dumps({"rows": n, "parts": len(parts)}))
        shutil.rmtree(entry / CHECKPOINTS, ignore_errors=True)  # a finished entry needs no partial work
        return _concat(parts)

    @staticmethod
    def _run(featurizer: Featurizer, todo) -> Iterator[tuple[int, pa.Table]]:
        """Row featurizers go to the active executor (local or Ray); a global one
        runs here and reaches the executor itself where it has a distributed form."""
        executor = current_executor() if featurizer.scope == "row" else LOCAL
        yield from executor.map_parts(featurizer, todo)

    def _meta(self, entry: Path, featurizer: Featurizer, n: int, part_rows: list[int] | None = None) -> dict:
        """The entry's `_meta.json`; an unfinished entry keeps its chunking so
        that a resumed run lines its parts up with the finished ones. A pool
        read shard by shard has a part per shard (`part_rows`): an unfinished
        entry chunked otherwise is started over."""
        path = entry / "_meta.json"
        if path.is_file():
            try:
                meta = json.loads(path.read_text())
                if (meta.get("rows") == n and isinstance(meta.get("chunk_rows"), int) and meta["chunk_rows"] > 0
                        and meta.get("part_rows") == part_rows):
                    return meta
            except (OSError, ValueError):
                pass
            shutil.rmtree(entry, ignore_errors=True)  # unusable leftovers: start over
        chunk = min(self.chunk_rows, featurizer.chunk_rows or self.chunk_rows)
        meta = {"name": featurizer.name, "version": featurizer.version, "params": featurizer.params,
                "depends_on": list(_dependency_keys(featurizer)), "scope": featurizer.scope,
                "columns": featurizer.columns, "rows": n, "chunk_rows": max(1, chunk)}
        if part_rows is not None:
            meta["part_rows"] = part_rows
        entry.mkdir(parents=True, exist_ok=True)
        with atomic_path(path) as tmp:
            tmp.write_text(json.dumps(meta, indent=1, sort_keys=True, default=repr))
        return meta

    def _read(self, entry: Path, featurizer: Featurizer, n: int) -> pa.Table | None:
        try:
            meta = json.loads((entry / "_meta.json").read_text())
        except (OSError, ValueError):
            return None
        if meta.get("rows") != n:
            return None
        parts = []
        for i, (start, stop) in enumerate(_spans(n, meta, featurizer.scope)):
            part = _read_part(entry / f"part-{i:05d}.parquet", stop - start, featurizer.columns)
            if part is None:
                return None
            parts.append(part)
        return _concat(parts)


# -- helpers ----------------------------------------------------------------
def dataset_fingerprint(ds) -> str:
    """`ds.fingerprint` when the Dataset has one, else a sha256 of its columns."""
    try:
        return _FINGERPRINTS[ds]
    except (KeyError, TypeError):
        pass
    fp = getattr(ds, "fingerprint", None)
    if fp:
        _remember(ds, str(fp))
        return str(fp)
    h = hashlib.sha256()
    table = ds.table if hasattr(ds, "table") else ds
    h.update(str(table.schema).encode())
    for batch in table.to_batches(max_chunksize=65_536):
        h.update(batch.serialize())
    digest = h.hexdigest()
    _remember(ds, digest)
    return digest


def _remember(ds, digest: str) -> None:
    # In-memory fingerprints hash every byte; compute them once per Dataset object.
    try:
        _FINGERPRINTS[ds] = digest
    except TypeError:
        pass


def _spans(n: int, meta: dict, scope: str) -> list[tuple[int, int]]:
    """Row ranges of the parts: chunks (or the shards' rows) for row featurizers,
    one span for global ones (and one empty part for an empty dataset, so the
    columns keep a type)."""
    if scope != "row" or n == 0:
        return [(0, n)]
    if meta.get("part_rows") is not None:
        ends = np.cumsum(np.asarray(meta["part_rows"], np.int64)).tolist()
        return list(zip([0] + ends[:-1], ends))
    chunk = meta["chunk_rows"]
    return [(s, min(n, s + chunk)) for s in range(0, n, chunk)]


def _shard_rows(ds, featurizer: Featurizer) -> list[int] | None:
    """A sharded pool's part sizes (one part per shard) for a row featurizer."""
    shards = getattr(ds, "shards", None)
    if shards is None or featurizer.scope != "row" or len(ds) == 0:
        return None
    return [s.rows for s in shards]


def _input_part(ds, featurizer: Featurizer, deps: list[pa.Table], i: int, span: tuple[int, int], entry: Path):
    """Part `i`'s input (rows `span`): a table, or for a sharded pool a
    `ShardInput` that the worker computing it reads from its own shard (a row
    featurizer's part i is shard i)."""
    if getattr(ds, "shards", None) is None:
        return _input_batch(ds, featurizer, deps, *span)
    if featurizer.scope == "row":
        return ShardInput(ds.shard_parts()[i], featurizer.inputs, _dep_slice(deps, *span), ds)
    if featurizer.reads_shards:
        parts = [ShardInput(p, featurizer.inputs, _dep_slice(deps, p.shard.row_start, p.shard.row_start + p.num_rows), ds)
                 for p in ds.shard_parts()]
        return ShardedInput(parts, len(ds), str(entry / CHECKPOINTS))
    remote = (set(ds.remote_columns()) | {"prompt", "response", "messages"}) & set(featurizer.inputs)
    if remote:
        log.warning("%s needs every row's %s in one process: gathering them from the shards", featurizer.name,
                    ", ".join(sorted(remote)))
    return _input_batch(ds, featurizer, deps, *span)


def _dep_slice(deps: list[pa.Table], start: int, stop: int) -> pa.Table | None:
    """The dependencies' columns, rows [start, stop), compact (it is pickled to a worker)."""
    if not deps:
        return None
    names, arrays = _dep_columns(deps, start, stop, [])
    return pa.Table.from_arrays([pa.concat_arrays([a]) for a in arrays], names=names)


def _dep_columns(deps: list[pa.Table], start: int, stop: int, have: list[str]) -> tuple[list[str], list[pa.Array]]:
    """Each dependency column not in `have` (first one of a name wins), rows [start, stop)."""
    names, arrays = [], []
    for table in deps:
        for name in table.column_names:
            if name not in have and name not in names:
                names.append(name)
                arrays.append(_slice(table.column(name), start, stop))
    return names, arrays


class ShardInput:
    """A part of a sharded pool: the featurizer's input columns, read by the
    worker from its shard, plus the dependencies' columns sent along."""

    def __init__(self, part, inputs: list[str], deps: pa.Table | None, ds):
        self.part, self.inputs, self.deps = part, list(inputs), deps
        start, stop = part.shard.row_start, part.shard.row_start + part.num_rows
        self.small = {n: pa.concat_arrays([_slice(ds.column(n), start, stop)])  # compact: it is pickled
                      for n in self.inputs if n in ds.table.column_names or n == "id"}

    @property
    def num_rows(self) -> int:
        return self.part.num_rows

    def materialize(self) -> pa.Table:
        """The table `_input_batch` gives for these rows."""
        read = [n for n in self.inputs if n not in self.small]
        table = self.part.columns(read) if read else None
        arrays = [self.small[n] if n in self.small else table.column(n).combine_chunks() for n in self.inputs]
        more_names, more_arrays = _dep_columns([self.deps] if self.deps is not None else [], 0, self.num_rows,
                                               self.inputs)
        names = self.inputs + more_names
        return pa.Table.from_arrays(arrays + more_arrays, names=names) if names else pa.table({})


class ShardedInput:
    """A global featurizer's input over a sharded pool: one `ShardInput` per
    shard, and a folder where a distributed run keeps its partial work."""

    def __init__(self, parts: list[ShardInput], num_rows: int, checkpoint: str):
        self.parts, self.num_rows, self.checkpoint = parts, num_rows, checkpoint

    def materialize(self) -> pa.Table:
        tables = [p.materialize() for p in self.parts]
        return pa.concat_tables(tables, promote_options="permissive") if tables else pa.table({})


def _dependency_keys(featurizer: Featurizer) -> tuple[str, ...]:
    return tuple(d.key(_dependency_keys(d)) for d in featurizer.depends_on())


def _input_batch(ds, featurizer: Featurizer, deps: list[pa.Table], start: int, stop: int) -> pa.Table:
    """The columns `featurizer` reads, rows [start, stop), plus its dependencies' columns."""
    names, arrays = [], []
    for name in featurizer.inputs:
        try:
            col = ds.column(name)
        except ThresherError:
            raise
        except Exception as exc:  # noqa: BLE001 - a Dataset without canonical columns
            raise UsageError(f"feature {featurizer.name!r} needs column {name!r}, which this dataset "
                             f"cannot provide ({exc}); pass the record format (--format)") from exc
        names.append(name)
        arrays.append(_slice(col, start, stop))
    more_names, more_arrays = _dep_columns(deps, start, stop, names)
    return pa.Table.from_arrays(arrays + more_arrays, names=names + more_names)


def _slice(col, start: int, stop: int) -> pa.Array:
    part = col.slice(start, stop - start)
    if isinstance(part, pa.ChunkedArray):
        return part.combine_chunks() if part.num_chunks else pa.array([], part.type)
    return part


def _read_part(path: Path, rows: int, columns: list[str]) -> pa.Table | None:
    """A finished part, or None when it is missing, unreadable or not the expected shape."""
    try:
        table = pq.read_table(path)
    except (OSError, pa.ArrowException):
        return None
    if table.num_rows != rows or table.column_names != columns:
        return None
    return table


def _write_atomic(table: pa.Table, path: Path) -> None:
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp)


def _concat(parts: list[pa.Table]) -> pa.Table:
    return pa.concat_tables(parts) if len(parts) > 1 else parts[0]
