"""Write a subset back in the input's own format, atomically.

JSONL and JSON subsets are written from the original record bytes, so each
row comes back exactly as it was (field order, spacing, escapes); extra
columns such as `_pi` / `_weight` are appended to each object.
"""
from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import numpy as np
import pyarrow as pa

from thresher.data.dataset import Dataset
from thresher.data.paths import atomic_path, check_output_path, write_bytes_atomic  # noqa: F401  (re-exported)
from thresher.errors import UsageError

OUTPUT_FORMATS = ("jsonl", "json", "csv", "parquet", "hf")


def output_format_for(path: Path, input_format: str, explicit: str | None = None) -> str:
    """The output format: explicit, else by extension, else the input's."""
    if explicit:
        if explicit not in OUTPUT_FORMATS:
            raise UsageError(f"unknown output format {explicit!r}; choose one of {', '.join(OUTPUT_FORMATS)}")
        return explicit
    by_suffix = {".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "json", ".csv": "csv", ".tsv": "csv",
                 ".parquet": "parquet", ".pq": "parquet"}
    suffix = path.suffix.lower()
    if suffix in by_suffix:
        return by_suffix[suffix]
    if suffix == "" and input_format in ("hf", "memory"):
        return "hf" if input_format == "hf" else "jsonl"
    return input_format if input_format != "memory" else "jsonl"


def write_subset(ds: Dataset, out: Path, *, out_format: str | None = None,
                 extra_columns: dict[str, np.ndarray] | None = None) -> str:
    """Write `ds` (already the subset) to `out`; returns the format written."""
    fmt = output_format_for(out, ds.source.file_format, out_format)
    extra = {k: np.asarray(v) for k, v in (extra_columns or {}).items()}
    if fmt != "jsonl":  # JSON lines stream (`_write_jsonl`); the other formats need every row here
        ds = ds.in_memory()
    writer = {"jsonl": _write_jsonl, "json": _write_json, "csv": _write_csv,
              "parquet": _write_parquet, "hf": _write_hf}[fmt]
    with atomic_path(out) as tmp:
        writer(ds, tmp, extra)
    return fmt


# -- JSON-based -----------------------------------------------------------

def _record_lines(ds: Dataset, extra: dict[str, np.ndarray]) -> list[bytes]:
    """One serialized JSON object per row, original bytes where we have them."""
    if ds.raw is not None and ds.source.file_format in ("jsonl", "json"):
        rows = ds.raw.rows()
    else:
        rows = [json.dumps(r, ensure_ascii=False).encode("utf-8") for r in _python_rows(ds)]
    if not extra:
        return rows
    names = list(extra)
    if any(n in ds.table.column_names for n in names):
        return [_replace_keys(row, extra, i) for i, row in enumerate(rows)]
    cells = []
    for n in names:
        key = f", {json.dumps(n)}: "
        cells.append([key + v for v in _json_scalars(extra[n])])
    tails = ["".join(parts).encode("utf-8") + b"}" for parts in zip(*cells)]
    out = []
    for row, tail in zip(rows, tails):
        body = row.rstrip()[:-1]
        if body.rstrip().endswith(b"{"):  # an empty object: no comma before the first key
            tail = tail[2:]
        out.append(body + tail)
    return out


def _replace_keys(row: bytes, extra: dict[str, np.ndarray], i: int) -> bytes:
    """Re-serialize a row whose old _pi/_weight must be replaced, not duplicated."""
    obj = json.loads(row)
    obj.update({n: _json_number(v[i].item()) for n, v in extra.items()})
    return json.dumps(obj, ensure_ascii=False).encode("utf-8")


def _json_scalars(values: np.ndarray) -> list[str]:
    """JSON text of each value (floats as Python's shortest repr; NaN/inf as null)."""
    if values.dtype.kind == "f":
        finite = np.isfinite(values)
        return [repr(v) if ok else "null" for v, ok in zip(values.tolist(), finite.tolist())]
    return [json.dumps(v) for v in values.tolist()]


def _json_number(v):
    if isinstance(v, float) and not np.isfinite(v):
        return None
    return v


def _python_rows(ds: Dataset) -> list[dict]:
    return ds.table.to_pylist()


def _write_jsonl(ds: Dataset, tmp: Path, extra: dict) -> None:
    """Piece by piece (a pool read shard by shard reads its rows back a shard at
    a time); a replaced _pi/_weight key needs the whole table's columns, so that
    case reads every row first."""
    pieces = [ds.in_memory()] if set(extra) & set(ds.fields) else ds.in_memory_pieces()
    done = 0
    with tmp.open("wb") as f:
        for piece in pieces:
            part = {k: v[done:done + len(piece)] for k, v in extra.items()}
            f.write(b"".join(line + b"\n" for line in _record_lines(piece, part)))
            done += len(piece)


def _write_json(ds: Dataset, tmp: Path, extra: dict) -> None:
    lines = _record_lines(ds, extra)
    body = b",\n".join(b"  " + line for line in lines)
    tmp.write_bytes(b"[\n" + body + (b"\n" if lines else b"") + b"]\n")


# -- tabular ----------------------------------------------------------------

def _with_extra(table: pa.Table, extra: dict[str, np.ndarray]) -> pa.Table:
    for name, values in extra.items():
        arr = pa.array(values)
        if name in table.column_names:
            table = table.set_column(table.column_names.index(name), name, arr)
        else:
            table = table.append_column(name, arr)
    return table


def _write_csv(ds: Dataset, tmp: Path, extra: dict) -> None:
    table = _with_extra(ds.table, extra)
    buf = io.StringIO(newline="")
    delimiter = "\t" if ds.source.path.lower().endswith(".tsv") and tmp.suffix != ".csv" else ","
    writer = csv.writer(buf, delimiter=delimiter, lineterminator="\n")
    writer.writerow(table.column_names)
    columns = [_csv_cells(table.column(i)) for i in range(table.num_columns)]
    writer.writerows(zip(*columns))
    tmp.write_text(buf.getvalue(), encoding="utf-8")


def _csv_cells(col) -> list:
    values = col.to_pylist()
    if pa.types.is_nested(col.type):
        return [json.dumps(v, ensure_ascii=False) if v is not None else "" for v in values]
    return ["" if v is None else v for v in values]


def _write_parquet(ds: Dataset, tmp: Path, extra: dict) -> None:
    import pyarrow.parquet as pq

    pq.write_table(_with_extra(ds.table, extra), tmp)


def _write_hf(ds: Dataset, tmp: Path, extra: dict) -> None:
    """A folder `datasets.load_from_disk` reads: one Arrow stream + state/info JSON."""
    tmp.unlink()
    tmp.mkdir()
    table = _with_extra(ds.table, extra)
    info = _hf_info(ds, table, extra)
    data_name = "data-00000-of-00001.arrow"
    schema = table.schema.with_metadata({"huggingface": json.dumps({"info": {"features": info["features"]}})})
    with pa.OSFile(str(tmp / data_name), "wb") as sink, pa.ipc.new_stream(sink, schema) as writer:
        writer.write_table(table.replace_schema_metadata(schema.metadata))
    state = {"_data_files": [{"filename": data_name}], "_fingerprint": _fingerprint(table),
             "_format_columns": None, "_format_kwargs": {}, "_format_type": None,
             "_output_all_columns": False, "_split": None}
    (tmp / "state.json").write_text(json.dumps(state, indent=2, sort_keys=True) + "\n")
    (tmp / "dataset_info.json").write_text(json.dumps(info, indent=2, sort_keys=True) + "\n")


def _hf_info(ds: Dataset, table: pa.Table, extra: dict) -> dict:
    info: dict = {}
    src = Path(ds.source.path) / "dataset_info.json"
    if ds.source.file_format == "hf" and src.exists():
        info = json.loads(src.read_text())
    features = info.get("features") or _features_from_schema(ds.table.schema)
    for name in extra:
        features[name] = _features_from_schema(pa.schema([table.schema.field(name)]))[name]  # _copy: int, _source_id: str
    info["features"] = features
    return info


def _features_from_schema(schema: pa.Schema) -> dict:
    def feature(t: pa.DataType):
        if pa.types.is_list(t) or pa.types.is_large_list(t):
            return {"feature": feature(t.value_type), "_type": "Sequence"} if not pa.types.is_struct(t.value_type) \
                else [feature(t.value_type)]
        if pa.types.is_struct(t):
            return {t.field(i).name: feature(t.field(i).type) for i in range(t.num_fields)}
        dtype = {"string": "string", "large_string": "large_string", "double": "float64", "float": "float32",
                 "int64": "int64", "int32": "int32", "bool": "bool", "null": "null"}.get(str(t), str(t))
        return {"dtype": dtype, "_type": "Value"}

    return {f.name: feature(f.type) for f in schema}


def _fingerprint(table: pa.Table) -> str:
    import hashlib

    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as w:
        w.write_table(table)
    return hashlib.sha256(sink.getvalue().to_pybytes()).hexdigest()[:16]
