"""Augmented rows in the pool's own record format, and on disk: where each
format keeps the editable texts (columns, or chat turns of some roles), the
augmented rows rebuilt from the edited texts (a table and, for JSON inputs,
the original JSON objects), unique ids for them, their provenance columns, and
the atomic write of originals + augmented rows with a manifest. Every
augmented row carries `_source_id` (its source row's id, or the source's own
`_source_id` when the source was itself augmented: the group to keep on one
side of a split), `_synthetic: true` and `_aug_ops`; original rows get
`_source_id` = their id, `_synthetic: false`, `_aug_ops` = "". Choosing the
rows, editing them and dropping duplicates is `thresher.balance.augment`.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from thresher.data.dataset import Dataset, RawRecords
from thresher.data.formats import CHAT_KEYS, ROLES
from thresher.errors import UsageError

SUPPORTED = ("alpaca", "prompt_completion", "messages", "sharegpt", "text")
_CHAT_ROLES = {"messages": ({"user"}, {"assistant"}), "sharegpt": ({"human"}, {"gpt"})}
EXTRA = ("_source_id", "_synthetic", "_aug_ops")


@dataclass
class AugmentResult:
    """Output rows (pool columns, in the input's format), their provenance
    columns, original bytes where the input had them, and the report."""

    table: pa.Table
    source: Any  # the pool's data.dataset.Source
    columns: dict[str, np.ndarray]
    raw: RawRecords | None
    report: dict[str, Any] = field(default_factory=dict)

    @property
    def dataset(self) -> Dataset:
        """The output as a Dataset, provenance columns included."""
        table = self.table
        for name, values in self.columns.items():
            arr = pa.array(values.tolist(), pa.bool_() if name == "_synthetic" else pa.string())
            if name in table.column_names:
                table = table.set_column(table.column_names.index(name), name, arr)
            else:
                table = table.append_column(name, arr)
        return Dataset(table, self.source)


# -- fields of each record format ----------------------------------------------
@dataclass(frozen=True)
class _Slots:
    """Where a row's editable texts live: string columns, or chat turns of some roles."""

    columns: tuple[str, ...] = ()
    chat_column: str | None = None
    roles: frozenset = frozenset()
    role_key: str = ""
    content_key: str = ""


def text_slots(ds: Dataset, which: str) -> _Slots:
    fmt = ds.source.record_format
    fmap = dict(ds.source.field_map)
    if fmt not in SUPPORTED:
        raise UsageError(f"{ds.source.path}: augment works on alpaca, prompt_completion, messages, sharegpt "
                         f"and text records; this input is {fmt!r} (pass --format and --field-map)")
    if fmt in _CHAT_ROLES:
        role_key, content_key = CHAT_KEYS[fmt]
        user, assistant = _CHAT_ROLES[fmt]
        roles = {"prompt": user, "response": assistant, "both": user | assistant}[which]
        column = fmap.get(ROLES[fmt][0][0], ROLES[fmt][0][0])
        return _Slots(chat_column=column, roles=frozenset(roles), role_key=role_key, content_key=content_key)
    prompt_roles = {"alpaca": ["instruction", "input"], "prompt_completion": ["prompt"], "text": []}[fmt]
    response_roles = {"alpaca": ["output"], "prompt_completion": ["completion"], "text": ["text"]}[fmt]
    if fmt == "text" and which != "response":
        raise UsageError(f"{ds.source.path}: 'text' records have no prompt; use --field response")
    wanted = {"prompt": prompt_roles, "response": response_roles, "both": prompt_roles + response_roles}[which]
    columns = [fmap.get(r, r) for r in wanted]
    return _Slots(columns=tuple(c for c in columns if c in ds.table.column_names))


def extract_texts(ds: Dataset, slots: _Slots, rows: np.ndarray):
    """Per row: its editable texts, and where each came from (chat: turn numbers)."""
    idx = pa.array(rows, pa.int64())
    if slots.chat_column is None:
        cols = [ds.table.column(c).take(idx).to_pylist() for c in slots.columns]
        units = [[("" if v is None else str(v)) for v in vals] for vals in zip(*cols)] if cols else \
            [[] for _ in rows]
        return units, None
    convs = ds.table.column(slots.chat_column).take(idx).to_pylist()
    units, where = [], []
    for conv in convs:
        turns = [i for i, t in enumerate(conv or []) if t and t.get(slots.role_key) in slots.roles]
        units.append([conv[i].get(slots.content_key) or "" for i in turns])
        where.append(turns)
    return units, (convs, where)


def build_rows(ds: Dataset, slots: _Slots, rows: np.ndarray, where, src: np.ndarray,
                texts: list[tuple[str, ...]]) -> tuple[pa.Table, list[bytes] | None]:
    """The augmented rows as a table (pool schema) and, for JSON inputs, as JSON lines."""
    table = ds.table.take(pa.array(src, pa.int64()))
    pos_of = {r: i for i, r in enumerate(rows.tolist())}
    raw_objs = _raw_objects(ds, src)
    if slots.chat_column is None:
        for c, name in enumerate(slots.columns):
            old = table.column(name).to_pylist()
            new = [t[c] if o is not None else None for t, o in zip(texts, old)]
            table = table.set_column(table.column_names.index(name), name,
                                     pa.array(new, table.schema.field(name).type))
            if raw_objs is not None:
                for obj, value in zip(raw_objs, new):
                    if value is not None:
                        obj[name] = value
    else:
        convs, turns_of = where
        new_convs = []
        for j, (r, t) in enumerate(zip(src.tolist(), texts)):
            i = pos_of[r]
            conv = [dict(turn) for turn in convs[i]]
            for text, turn in zip(t, turns_of[i]):
                conv[turn][slots.content_key] = text
                if raw_objs is not None:
                    raw_objs[j][slots.chat_column][turn][slots.content_key] = text
            new_convs.append(conv)
        name = slots.chat_column
        table = table.set_column(table.column_names.index(name), name,
                                 pa.array(new_convs, table.schema.field(name).type))
    return table, raw_objs


def _raw_objects(ds: Dataset, src: np.ndarray) -> list[dict] | None:
    """The source rows as parsed from their original bytes (JSON inputs only)."""
    if ds.raw is None or ds.source.file_format not in ("jsonl", "json"):
        return None
    return [json.loads(ds.raw.row(int(r))) for r in src.tolist()]


def new_ids(ds: Dataset, table: pa.Table, objs: list[dict] | None, src: np.ndarray) -> pa.Table:
    """Given `id` columns must stay unique: "<source id>-aug<k>" (integers: max + k).
    `objs` (the rows as JSON objects) get the same ids."""
    if "id" not in table.column_names or table.num_rows == 0:
        return table
    typ = table.schema.field("id").type
    if pa.types.is_integer(typ):
        start = int(np.max(ds.numeric("id"))) + 1
        new = list(range(start, start + table.num_rows))
    else:
        used = set(np.asarray(ds.ids, dtype=object).astype(str).tolist())
        counter: dict[int, int] = {}
        new = []
        for s, sid in zip(src.tolist(), ds.ids_of(src).tolist()):
            k = counter.get(s, 0)
            while f"{sid}-aug{k}" in used:
                k += 1
            counter[s] = k + 1
            new.append(f"{sid}-aug{k}")
            used.add(new[-1])
    table = table.set_column(table.column_names.index("id"), "id", pa.array(new, typ))
    for o, v in zip(objs or (), new):
        o["id"] = v
    return table


def _group_ids(ds: Dataset, rows: np.ndarray) -> np.ndarray:
    """The group of each row: its `_source_id` when it has one, else its id."""
    ids = np.asarray(ds.ids_of(rows), dtype=object).astype(str)
    if "_source_id" in ds.table.column_names and len(rows):
        given = ds.table.column("_source_id").take(pa.array(rows, pa.int64())).to_pylist()
        ids = np.array([str(g) if g not in (None, "") else i for g, i in zip(given, ids.tolist())], dtype=object)
    return ids.astype(object)


def _given(ds: Dataset, name: str, rows: np.ndarray, default):
    """A provenance column the input already has (nulls -> default), else all default."""
    if name not in ds.table.column_names:
        return [default] * len(rows)
    values = ds.table.column(name).take(pa.array(rows, pa.int64())).to_pylist()
    return [default if v is None else v for v in values]


def assemble(ds: Dataset, aug_table: pa.Table, aug_raw, src: np.ndarray, ops: np.ndarray, only_new: bool,
              report: dict) -> AugmentResult:
    n_aug = aug_table.num_rows
    # A source that was itself augmented passes on its group and its ops ("sr,rd").
    earlier = _given(ds, "_aug_ops", src, "")
    chained = [f"{e},{o}" if e else o for e, o in zip(earlier, ops.tolist())]
    aug_cols = {"_source_id": _group_ids(ds, src), "_synthetic": np.ones(n_aug, bool),
                "_aug_ops": np.asarray(chained, dtype=object)}
    if only_new:
        table, columns = aug_table, aug_cols
        raw = _raw_of_lines(aug_raw, b"") if aug_raw is not None else None
    else:
        all_rows = np.arange(len(ds), dtype=np.int64)
        orig_cols = {"_source_id": _group_ids(ds, all_rows),
                     "_synthetic": np.asarray([v in (True, "true", "True", 1) for v in
                                               _given(ds, "_synthetic", all_rows, False)], dtype=bool),
                     "_aug_ops": np.asarray([str(v) for v in _given(ds, "_aug_ops", all_rows, "")], dtype=object)}
        table = pa.concat_tables([ds.table, aug_table]) if n_aug else ds.table
        columns = {k: np.concatenate([orig_cols[k], aug_cols[k]]) for k in EXTRA}
        raw = None
        if aug_raw is not None and ds.raw is not None:
            pool_rows = ds.raw.rows()
            raw = _raw_of_lines([bytes(r) for r in pool_rows] + aug_raw, ds.raw.header)
    report["rows_out"] = table.num_rows
    return AugmentResult(table, ds.source, columns, raw, report)


def _raw_of_lines(lines: list[bytes], header: bytes) -> RawRecords:
    lengths = np.fromiter((len(line) for line in lines), dtype=np.int64, count=len(lines))
    starts = np.r_[0, np.cumsum(lengths + 1)[:-1]] if len(lines) else np.zeros(0, np.int64)
    return RawRecords(b"\n".join(lines), starts, starts + lengths, header)


# -- writing ---------------------------------------------------------------------
def write_augmented(pool: Dataset, result: AugmentResult, out: str | Path, *, params: dict, seed: int,
                    rejects: list | None = None, out_format: str | None = None, overwrite: bool = False,
                    command: str = "augment") -> dict[str, Any]:
    """Write the rows (input's format) and `<stem>.manifest.json`, atomically; nothing on error."""
    from thresher._version import __version__
    from thresher.data.manifest import output_paths, write_outputs
    from thresher.data.writers import output_format_for, write_subset

    out, man_path, rej_path = output_paths(Path(out), pool, overwrite, with_rejects=bool(rejects))
    fmt = output_format_for(out, pool.source.file_format, out_format)
    manifest = {
        "thresher_version": __version__, "command": command,
        "input": {"path": pool.source.path, "sha256": pool.source.sha256, "rows": len(pool),
                  "format": pool.source.file_format, "record_format": pool.source.record_format,
                  "rejected_rows": len(rejects or [])},
        "output": {"path": str(out), "rows": result.table.num_rows, "format": fmt},
        "method": "eda", "params": params, "seed": seed, "augment": result.report,
    }
    if rej_path:
        manifest["rejects_file"] = str(rej_path)
    writer_ds = Dataset(result.table, pool.source, raw=result.raw)
    write_outputs(lambda: write_subset(writer_ds, out, out_format=fmt, extra_columns=result.columns),
                  man_path, manifest, rej_path, rejects)
    return {"output": out, "manifest": man_path, "rejects": rej_path, "format": fmt, "manifest_data": manifest}
