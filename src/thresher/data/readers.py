"""Read a pool from JSONL, JSON, CSV, Parquet or a HF `save_to_disk` folder.

JSONL takes a fast path (pyarrow's multithreaded JSON reader) when cheap
byte-level checks say the file is plain; anything unusual goes through a
line-by-line Python parser that can name the exact line and field. This
module holds the formats (how each is loaded, the reader's result and its
rejects); what makes a JSON record acceptable is `thresher.data.strict_json`.
"""
from __future__ import annotations

import csv
import hashlib
import io
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa

from thresher.data.dataset import NORMALIZATION_VERSION, Dataset, RawRecords, Source  # noqa: F401 (re-export)
from thresher.data.formats import Problem, detect_format, first_per_row, validate_table
from thresher.data.ids import check_given_ids, given_ids
from thresher.data.strict_json import (SURROGATE_ESCAPE, arrow_table_is_clean, json_kind, nesting_is_shallow,
                                       parse_json_text, record_problem, records_to_table, try_arrow_json)
from thresher.errors import InputError, UsageError

FILE_FORMATS = ("jsonl", "json", "csv", "parquet", "hf")


@dataclass
class Reject:
    """A row skipped under `--on-error skip`, with where and why."""

    location: str  # "line 3" / "record 3"
    field: str | None
    reason: str
    raw: str | None = None

    def to_json(self) -> dict:
        return {"location": self.location, "field": self.field, "reason": self.reason, "raw": self.raw}


@dataclass
class ReadResult:
    dataset: Dataset
    rejects: list[Reject] = field(default_factory=list)


@dataclass
class _Loaded:
    """What a file reader produces before format validation."""

    table: pa.Table
    origin: np.ndarray  # 1-based line (text files) or record number per row
    unit: str  # "line" | "record"
    raw: RawRecords | None
    sha256: str
    problems: list[Problem]  # parse problems, rows refer to `origin` values directly
    raw_text: dict[int, str] = field(default_factory=dict)


def detect_file_format(path: Path, file_format: str | None = None) -> str:
    if file_format:
        if file_format not in FILE_FORMATS:
            raise UsageError(f"unknown input format {file_format!r}; choose one of {', '.join(FILE_FORMATS)}")
        return file_format
    if path.is_dir():
        if (path / "state.json").exists() or (path / "dataset_info.json").exists():
            return "hf"
        raise InputError(str(path), "a folder that is not a HF datasets save_to_disk folder (no state.json)")
    suffix = path.suffix.lower()
    if suffix in (".jsonl", ".ndjson"):
        return "jsonl"
    if suffix == ".json":
        head = path.open("rb").read(1 << 16).lstrip()
        object_lines = sum(1 for line in head.splitlines() if line.lstrip().startswith(b"{"))
        return "jsonl" if head.startswith(b"{") and object_lines > 1 else "json"
    if suffix in (".csv", ".tsv"):
        return "csv"
    if suffix in (".parquet", ".pq"):
        return "parquet"
    raise UsageError(f"{path}: cannot tell the file format from the extension {suffix!r}; pass --input-format")


def read_dataset(path: str | Path, *, file_format: str | None = None, record_format: str | None = None,
                 field_map: dict[str, str] | None = None, on_error: str = "raise") -> ReadResult:
    """Read and validate a pool. `on_error="skip"` drops malformed rows and returns them as rejects."""
    check_on_error(on_error)
    path = Path(path)
    _check_input_path(path)
    try:
        fmt = detect_file_format(path, file_format)
        loaded = {"jsonl": _load_jsonl, "json": _load_json, "csv": _load_csv,
                  "parquet": _load_parquet, "hf": _load_hf}[fmt](path, on_error)
    except OSError as err:  # EACCES, EIO, a file removed while reading...
        raise InputError(str(err.filename or path), f"cannot read ({err.strerror or err})") from None
    field_map = field_map or {}
    if loaded.table.num_rows == 0 and not loaded.problems:
        raise InputError(str(path), "no records (the input is empty)")
    rfmt = detect_format(loaded.table.column_names, str(path), record_format, field_map) \
        if loaded.table.num_rows else (record_format or "unknown")
    problems = [Problem(int(loaded.origin[p.row]), p.field, p.reason)
                for p in validate_table(loaded.table, rfmt, field_map)] if loaded.table.num_rows else []
    if "id" in loaded.table.column_names:
        problems += [Problem(int(loaded.origin[p.row]), p.field, _with_unit(p.reason, loaded.unit, loaded.origin))
                     for p in check_given_ids(given_ids(loaded.table))]
    all_problems = sorted(loaded.problems + problems, key=lambda p: p.row)
    if all_problems and on_error == "raise":
        p = all_problems[0]
        raise InputError(str(path), p.reason, field=p.field, **{loaded.unit: p.row})
    keep = np.ones(loaded.table.num_rows, dtype=bool)
    bad_origins = {p.row for p in problems}
    if bad_origins:
        keep &= ~np.isin(loaded.origin, np.fromiter(bad_origins, dtype=np.int64))
    rejects = [Reject(f"{loaded.unit} {p.row}", p.field, p.reason, loaded.raw_text.get(p.row) or
                      _raw_of(loaded, p.row)) for p in first_per_row(all_problems)]
    table, raw, origin = loaded.table, loaded.raw, loaded.origin
    if not keep.all():
        idx = np.flatnonzero(keep)
        table, origin = table.take(pa.array(idx)), origin[idx]
        raw = raw.take(idx) if raw is not None else None
    if table.num_rows == 0:
        raise InputError(str(path), f"no valid records ({len(rejects)} rejected)")
    source = Source(str(path), loaded.sha256, fmt, rfmt, tuple(sorted(field_map.items())))
    ids = given_ids(table).cast(pa.string()) if "id" in table.column_names else None
    ds = Dataset(table, source, ids=ids, raw=raw, origin_rows=origin)
    return ReadResult(ds, rejects)


def check_on_error(on_error: str) -> None:
    if on_error not in ("raise", "skip"):
        raise UsageError(f"--on-error must be 'raise' or 'skip', got {on_error!r}")


def _check_input_path(path: Path) -> None:
    """A regular file or a folder; anything else (a FIFO would block forever
    waiting for a writer, a device never ends) is refused up front."""
    import stat

    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        raise InputError(str(path), "no such file or directory") from None
    except OSError as err:
        raise InputError(str(path), f"cannot read ({err.strerror or err})") from None
    if stat.S_ISREG(mode) or stat.S_ISDIR(mode):
        return
    kind = "a FIFO (named pipe)" if stat.S_ISFIFO(mode) else "a socket" if stat.S_ISSOCK(mode) else "a device"
    raise InputError(str(path), f"{kind}, not a regular file; save the data to a file and read that")


def _with_unit(reason: str, unit: str, origin: np.ndarray) -> str:
    """ids.py names first occurrences by table row; translate to the file's unit."""
    if "(first at row " not in reason:
        return reason
    head, _, tail = reason.partition("(first at row ")
    row = int(tail.rstrip(")"))
    return f"{head}(first on {unit} {int(origin[row])})"


def _raw_of(loaded: _Loaded, origin_value: int) -> str | None:
    if loaded.raw is None:
        return None
    hit = np.flatnonzero(loaded.origin == origin_value)
    return loaded.raw.row(int(hit[0])).decode("utf-8", "replace") if len(hit) else None


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# -- JSONL ------------------------------------------------------------------

def _line_spans(buf: bytes) -> tuple[np.ndarray, np.ndarray]:
    """Start/end byte offsets of every line (end excludes '\\n' and a trailing '\\r')."""
    arr = np.frombuffer(buf, dtype=np.uint8)
    newlines = np.flatnonzero(arr == 10)
    starts = np.concatenate([[0], newlines + 1]).astype(np.int64)
    ends = np.concatenate([newlines, [len(arr)]]).astype(np.int64)
    if len(buf) and buf.endswith(b"\n"):
        starts, ends = starts[:-1], ends[:-1]
    has_cr = (ends > starts) & (arr[np.maximum(ends - 1, 0)] == 13)
    return starts, ends - has_cr


def _load_jsonl(path: Path, on_error: str) -> _Loaded:
    from concurrent.futures import ThreadPoolExecutor

    buf = path.read_bytes()
    if not buf or buf.isspace():
        raise InputError(str(path), "the file is empty (no records)")
    with ThreadPoolExecutor(max_workers=1) as pool:
        sha_future = pool.submit(_sha256, buf)  # hashlib releases the GIL: hash while we index and parse
        loaded = load_jsonl_bytes(buf)
        loaded.sha256 = sha_future.result()
    return loaded


def load_jsonl_bytes(buf: bytes, lines_before: int = 0) -> _Loaded:
    """JSONL records of `buf` (a whole file, or a shard of one cut at a line
    boundary after `lines_before` lines: origins are the file's line numbers)."""
    if not buf or buf.isspace():
        return _Loaded(pa.table({}), np.zeros(0, np.int64), "line", RawRecords(buf, [], []), "", [])
    starts, ends = _line_spans(buf)
    arr = np.frombuffer(buf, dtype=np.uint8)
    nonempty = ends > starts
    first_byte = np.where(nonempty, arr[np.minimum(starts, len(arr) - 1)], 0)
    lines = np.flatnonzero(nonempty)
    plain = (b"\x00" not in buf and np.all(first_byte[nonempty] == 0x7B)
             and nesting_is_shallow(buf, arr, starts, ends))  # checked first: deep nesting crashes Arrow
    table = try_arrow_json(buf) if plain else None
    if table is not None and table.num_rows == len(lines) and arrow_table_is_clean(table):
        raw = RawRecords(buf, starts[lines], ends[lines])
        return _Loaded(table, lines + 1 + lines_before, "line", raw, "", [])
    return _load_jsonl_slow(buf, starts, ends, lines_before)


def _load_jsonl_slow(buf: bytes, starts: np.ndarray, ends: np.ndarray, lines_before: int = 0) -> _Loaded:
    records, origin, keep, problems, raw_text = [], [], [], [], {}
    for i, (s, e) in enumerate(zip(starts.tolist(), ends.tolist())):
        line_no = i + 1 + lines_before
        chunk = buf[s:e]
        if not chunk.strip():
            continue
        reason, bad_field = None, None
        try:
            text = chunk.decode("utf-8")
        except UnicodeDecodeError as err:
            reason, text = f"invalid UTF-8 (byte 0x{chunk[err.start]:02x} at column {err.start + 1})", None
        if text is not None and "\x00" in text:
            reason = f"NUL byte at column {text.index(chr(0)) + 1}"
        if reason is None:
            try:
                obj = parse_json_text(text)
                reason, bad_field = record_problem(obj, SURROGATE_ESCAPE.search(chunk) is not None,
                                                   "a JSON object per line")
            except ValueError as err:
                reason = str(err)
        if reason is not None:
            problems.append(Problem(line_no, bad_field, reason))
            raw_text[line_no] = chunk.decode("utf-8", "replace")
            continue
        records.append(obj)
        origin.append(line_no)
        keep.append(i)
    keep_arr = np.asarray(keep, dtype=np.int64)
    table, kind_problems = records_to_table(records, np.asarray(origin, dtype=np.int64))
    problems += kind_problems
    bad = {p.row for p in kind_problems}
    mask = np.array([o not in bad for o in origin], dtype=bool)
    raw = RawRecords(buf, starts[keep_arr][mask], ends[keep_arr][mask])
    return _Loaded(table, np.asarray(origin, dtype=np.int64)[mask], "line", raw, "", problems, raw_text)


# -- JSON array -------------------------------------------------------------

def _load_json(path: Path, on_error: str) -> _Loaded:
    buf = path.read_bytes()
    sha = _sha256(buf)
    if not buf.strip():
        raise InputError(str(path), "the file is empty (no records)")
    try:
        text = buf.decode("utf-8")
    except UnicodeDecodeError as err:
        line = buf.count(b"\n", 0, err.start) + 1
        raise InputError(str(path), f"invalid UTF-8 (byte 0x{buf[err.start]:02x})", line=line) from None
    if "\x00" in text:
        raise InputError(str(path), "NUL byte in the file", line=text.count("\n", 0, text.index("\x00")) + 1)
    try:
        doc = parse_json_text(text)
    except ValueError as err:
        raise InputError(str(path), str(err)) from None
    if not isinstance(doc, list):
        raise InputError(str(path), f"a JSON document must be a list of records (objects), got {json_kind(doc)}")
    problems, records, origin = [], [], []
    escapes = SURROGATE_ESCAPE.search(buf) is not None
    for i, rec in enumerate(doc, start=1):
        reason, bad_field = record_problem(rec, escapes)
        if reason is not None:
            problems.append(Problem(i, bad_field, reason))
        else:
            records.append(rec)
            origin.append(i)
    origin_arr = np.asarray(origin, dtype=np.int64)
    table, kind_problems = records_to_table(records, origin_arr)
    bad = {p.row for p in kind_problems}
    kept = [r for r, o in zip(records, origin) if o not in bad]
    origin_arr = np.asarray([o for o in origin if o not in bad], dtype=np.int64)
    raw = _serialize_records(kept)
    problems = [Problem(p.row, p.field, p.reason.replace(" on line ", " in record ")) for p in problems + kind_problems]
    return _Loaded(table, origin_arr, "record", raw, sha, problems)


def _serialize_records(records: list[dict]) -> RawRecords:
    parts = [json.dumps(r, ensure_ascii=False).encode("utf-8") for r in records]
    lengths = np.fromiter((len(p) for p in parts), dtype=np.int64, count=len(parts))
    ends = np.cumsum(lengths)
    return RawRecords(b"".join(parts), ends - lengths, ends)


# -- CSV --------------------------------------------------------------------

def _load_csv(path: Path, on_error: str) -> _Loaded:
    """CSV cells are read as strings so a subset is written back unchanged."""
    buf = path.read_bytes()
    sha = _sha256(buf)
    if not buf.strip():
        raise InputError(str(path), "the file is empty (no records)")
    if b"\x00" in buf:
        raise InputError(str(path), "NUL byte in the file", line=buf.count(b"\n", 0, buf.index(b"\x00")) + 1)
    try:
        text = buf.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        line = buf.count(b"\n", 0, err.start) + 1
        raise InputError(str(path), f"invalid UTF-8 (byte 0x{buf[err.start]:02x})", line=line) from None
    delimiter = "\t" if path.suffix.lower() == ".tsv" else ","
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    try:
        header = next(reader)
    except StopIteration:
        raise InputError(str(path), "the file is empty (no header)") from None
    if len(set(header)) != len(header) or any(not h for h in header):
        raise InputError(str(path), "the header has empty or repeated column names", line=1)
    columns: list[list[str]] = [[] for _ in header]
    origin, problems, line_start = [], [], reader.line_num + 1
    for row in reader:
        line = line_start
        line_start = reader.line_num + 1
        if not row or (len(row) == 1 and not row[0].strip()):
            continue
        if len(row) != len(header):
            problems.append(Problem(line, None, f"ragged row: {len(row)} fields, the header has {len(header)}"))
            continue
        for col, value in zip(columns, row):
            col.append(value)
        origin.append(line)
    table = pa.table({h: pa.array(c, pa.string()) for h, c in zip(header, columns)})
    return _Loaded(table, np.asarray(origin, dtype=np.int64), "line", None, sha, problems)


# -- Parquet and HF folders -------------------------------------------------

def _load_parquet(path: Path, on_error: str) -> _Loaded:
    import pyarrow.parquet as pq

    buf = path.read_bytes()
    try:
        table = pq.read_table(io.BytesIO(buf))
    except (pa.ArrowInvalid, OSError) as err:
        raise InputError(str(path), f"not a readable Parquet file ({err})") from None
    return _Loaded(table, np.arange(1, table.num_rows + 1), "record", None, _sha256(buf), [])


def hf_data_files(path: Path) -> list[Path]:
    state = path / "state.json"
    if state.exists():
        try:
            names = [str(f["filename"]) for f in json.loads(state.read_text())["_data_files"]]
        except (ValueError, KeyError, TypeError) as err:
            raise InputError(str(state), f"not a HF datasets state.json ({err})") from None
        return [path / n for n in names]
    return sorted(path.glob("*.arrow"))


def _load_hf(path: Path, on_error: str) -> _Loaded:
    files = hf_data_files(path)
    if not files:
        raise InputError(str(path), "HF dataset folder without .arrow data files")
    digest, tables = hashlib.sha256(), []
    for f in files:
        if not f.is_file():
            raise InputError(str(path), f"data file {f.name!r} listed in state.json is missing "
                                        "(an incomplete copy of a save_to_disk folder?)")
        data = f.read_bytes()
        digest.update(data)
        try:
            tables.append(pa.ipc.open_stream(data).read_all())
        except pa.ArrowInvalid:
            try:
                tables.append(pa.ipc.open_file(data).read_all())
            except pa.ArrowInvalid as err:
                raise InputError(str(f), f"not an Arrow data file ({err})") from None
    table = pa.concat_tables(tables).replace_schema_metadata(None)
    return _Loaded(table, np.arange(1, table.num_rows + 1), "record", None, digest.hexdigest(), [])
