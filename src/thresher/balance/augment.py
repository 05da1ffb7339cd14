"""Augment a pool with EDA: pick the rows (all, or thin categories), edit the
prompt and/or response fields in the input's own format, drop augmented rows
that duplicate the pool, and write originals + augmented rows with a manifest.

Every augmented row carries `_source_id` (its source row's id, or the source's
own `_source_id` when the source was itself augmented: the group to keep on
one side of a split), `_synthetic: true` and `_aug_ops`; original rows get
`_source_id` = their id, `_synthetic: false`, `_aug_ops` = "".
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import pyarrow as pa

from thresher.balance.eda import EDA, OPS
from thresher.data.dataset import MISSING_LABEL, Dataset, RawRecords
from thresher.data.formats import CHAT_KEYS, ROLES
from thresher.errors import UsageError

FIELDS = ("prompt", "response", "both")
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


class Augmenter:
    """EDA over a pool's rows. Parameters as in `thresher augment`:

    field: "prompt", "response" or "both" (the texts edited).
    by / only_below: with `only_below=N`, only categories of `by` with fewer
        than N rows are augmented; with `by`, each row's label is protected.
    near_dup_threshold: an augmented row whose word-3-shingle Jaccard with a
        pool row other than its source reaches this is counted (and dropped
        with `drop_near_dups`). Exact (normalized) duplicates of a pool row
        are always dropped.
    only_new: output only the augmented rows.
    """

    def __init__(self, ops: Sequence[str] = OPS, alpha: float | Mapping[str, float] = 0.1, n_aug: int = 4,
                 field: str = "prompt", protect: Sequence[str] = (), by: str | None = None,
                 only_below: int | None = None, near_dup_threshold: float = 0.9, drop_near_dups: bool = False,
                 only_new: bool = False, seed: int | None = 0, wordnet=None):
        self.eda = EDA(ops=ops, alpha=alpha, n_aug=n_aug, protect=protect, wordnet=wordnet)
        if field not in FIELDS:
            raise UsageError(f"--field must be one of {', '.join(FIELDS)}, got {field!r}")
        if only_below is not None:
            if isinstance(only_below, bool) or not isinstance(only_below, (int, np.integer)) or only_below < 1:
                raise UsageError(f"--only-below must be a positive integer, got {only_below!r}")
            if not by:
                raise UsageError("--only-below needs --by FIELD (the categories to count)")
        if not isinstance(near_dup_threshold, (int, float)) or not 0 < near_dup_threshold <= 1:
            raise UsageError(f"--near-dup-threshold must be in (0, 1], got {near_dup_threshold!r}")
        self.field, self.by, self.only_below = field, by, only_below
        self.near_dup_threshold, self.drop_near_dups, self.only_new = float(near_dup_threshold), drop_near_dups, only_new
        self.seed = 0 if seed is None else int(seed)

    def params(self) -> dict[str, Any]:
        return {"ops": list(self.eda.ops), "alpha": self.eda.alpha, "n_aug": self.eda.n_aug, "field": self.field,
                "protect": list(self.eda.protect), "by": self.by, "only_below": self.only_below,
                "near_dup_threshold": self.near_dup_threshold, "drop_near_dups": self.drop_near_dups,
                "only_new": self.only_new}

    # -- main -----------------------------------------------------------------
    def augment(self, ds: Dataset) -> AugmentResult:
        """Originals (unless only_new) followed by the kept augmented rows."""
        slots = _slots(ds, self.field)
        rows, labels, codes, names = self._rows(ds)
        ids = np.asarray(ds.ids_of(rows), dtype=object).astype(str) if len(rows) else np.zeros(0, str)
        units, where = _extract(ds, slots, rows)
        src, texts, ops, short = [], [], [], []
        for r, key, u, lab in zip(rows.tolist(), ids.tolist(), units, labels):
            v = self.eda.augment_units(u, self.seed, key, lab)
            src += [r] * len(v.texts)
            texts += v.texts
            ops += v.ops
            if v.reason:
                short.append({"id": key, "generated": len(v.texts), "reason": v.reason})
        src = np.asarray(src, dtype=np.int64)
        aug_table, objs = _build_rows(ds, slots, rows, where, src, texts)
        keep, dup_stats = self._dedup(ds, aug_table, src, ids, rows)
        aug_table = aug_table.filter(pa.array(keep))
        src = src[keep]
        ops = np.asarray(ops, dtype=object)[keep] if len(ops) else np.zeros(0, object)
        objs = [o for o, k in zip(objs, keep) if k] if objs is not None else None
        aug_table = _new_ids(ds, aug_table, objs, src)
        aug_raw = None if objs is None else [json.dumps(o, ensure_ascii=False).encode("utf-8") for o in objs]
        report = self._report(ds, rows, src, ops, short, dup_stats, codes, names)
        return _assemble(ds, aug_table, aug_raw, src, ops, self.only_new, report)

    def _rows(self, ds: Dataset):
        """Rows to augment, their labels (or None), category codes and names."""
        n = len(ds)
        if not self.by:
            return np.arange(n, dtype=np.int64), [None] * n, None, None
        codes, names = ds.categorical([self.by])
        counts = np.bincount(codes, minlength=len(names))
        eligible = counts < self.only_below if self.only_below else np.ones(len(names), bool)
        rows = np.flatnonzero(eligible[codes]).astype(np.int64)
        labels = [None if names[c] == MISSING_LABEL else names[c] for c in codes[rows].tolist()]
        return rows, labels, codes, names

    def _dedup(self, ds: Dataset, aug_table: pa.Table, src: np.ndarray, ids: np.ndarray, rows: np.ndarray):
        """Keep-mask over augmented rows and the duplicate counts."""
        from thresher.features.minhash import exact_hash

        stats = {"dropped_exact_pool_duplicates": 0, "dropped_duplicate_augmented": 0,
                 "near_duplicates_of_other_rows": 0, "dropped_near_duplicates": 0}
        if len(src) == 0:
            return np.zeros(0, bool), stats
        pool_text = _content(ds)
        aug_text = _content(Dataset(aug_table, ds.source))
        pool_h = np.asarray(exact_hash(pool_text).to_numpy(zero_copy_only=False), dtype=np.uint64)
        aug_h = np.asarray(exact_hash(aug_text).to_numpy(zero_copy_only=False), dtype=np.uint64)
        in_pool = np.isin(aug_h, pool_h)
        stats["dropped_exact_pool_duplicates"] = int(in_pool.sum())
        # Repeats among augmented rows: keep the first by (source id, variant), so
        # the choice does not depend on row order.
        id_of_row = dict(zip(rows.tolist(), ids.tolist()))
        src_ids = np.array([id_of_row[s] for s in src.tolist()], dtype=str)
        order = np.lexsort((np.arange(len(src)), src_ids))
        seen_first = np.zeros(len(src), bool)
        _, first = np.unique(aug_h[order], return_index=True)
        seen_first[order[first]] = True
        repeat = ~seen_first & ~in_pool
        stats["dropped_duplicate_augmented"] = int(repeat.sum())
        keep = ~in_pool & ~repeat
        near = self._near(pool_text, aug_text, src, keep)
        stats["near_duplicates_of_other_rows"] = int(near.sum())
        if self.drop_near_dups:
            stats["dropped_near_duplicates"] = int(near.sum())
            keep &= ~near
        return keep, stats

    def _near(self, pool_text: pa.Array, aug_text: pa.Array, src: np.ndarray, keep: np.ndarray) -> np.ndarray:
        """Augmented rows whose Jaccard with a pool row other than their source is >= threshold."""
        from thresher.features.minhash import estimate_jaccard, lsh_candidates, minhash_signatures

        n = len(pool_text)
        sig = minhash_signatures(pa.concat_arrays([pool_text, aug_text]), num_perm=128, shingle_size=3, seed=1)
        pairs = lsh_candidates(sig, self.near_dup_threshold)
        cross = (pairs[:, 0] < n) & (pairs[:, 1] >= n)
        pairs = pairs[cross]
        aug_row = pairs[:, 1] - n
        pairs = pairs[(pairs[:, 0] != src[aug_row]) & keep[aug_row]]
        hit = pairs[estimate_jaccard(sig, pairs) >= self.near_dup_threshold]
        out = np.zeros(len(aug_text), bool)
        out[hit[:, 1] - n] = True
        return out

    def _report(self, ds, rows, src, ops, short, dup_stats, codes, names) -> dict[str, Any]:
        requested = len(rows) * self.eda.n_aug
        generated = len(src) + sum(dup_stats[k] for k in ("dropped_exact_pool_duplicates",
                                                           "dropped_duplicate_augmented", "dropped_near_duplicates"))
        report: dict[str, Any] = {
            "rows_in": len(ds), "rows_augmented": len(rows), "requested": requested, "generated": generated,
            **dup_stats, "augmented_rows": len(src),
            "acceptance": round(len(src) / requested, 6) if requested else None,
            "ops": {op: int(np.count_nonzero(ops == op)) for op in self.eda.ops},
            "short_rows": len(short), "reasons": _count_reasons(short), "short": short,
        }
        if codes is not None:
            before = np.bincount(codes, minlength=len(names))
            added = np.bincount(codes[src], minlength=len(names)) if len(src) else np.zeros(len(names), np.int64)
            report["categories"] = [{"category": c, "before": int(b), "augmented": int(a),
                                     "after": int(a) + (0 if self.only_new else int(b))}
                                    for c, b, a in zip(names, before.tolist(), added.tolist())]
        return report


def augment(ds: Dataset, *, seed: int | None = 0, **params) -> AugmentResult:
    """`thresher.balance.augment.augment(ds, n_aug=4, field="both", by="category", only_below=50, seed=0)`."""
    return Augmenter(seed=seed, **params).augment(ds)


# -- fields of each record format ----------------------------------------------
@dataclass(frozen=True)
class _Slots:
    """Where a row's editable texts live: string columns, or chat turns of some roles."""

    columns: tuple[str, ...] = ()
    chat_column: str | None = None
    roles: frozenset = frozenset()
    role_key: str = ""
    content_key: str = ""


def _slots(ds: Dataset, which: str) -> _Slots:
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


def _extract(ds: Dataset, slots: _Slots, rows: np.ndarray):
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


def _build_rows(ds: Dataset, slots: _Slots, rows: np.ndarray, where, src: np.ndarray,
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


def _new_ids(ds: Dataset, table: pa.Table, objs: list[dict] | None, src: np.ndarray) -> pa.Table:
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


def _content(ds: Dataset) -> pa.Array:
    """prompt + newline + response per row (what duplicates are judged on)."""
    import pyarrow.compute as pc

    prompt, response = ds.column("prompt"), ds.column("response")
    joined = pc.binary_join_element_wise(prompt, response, "\n")
    return joined.combine_chunks() if isinstance(joined, pa.ChunkedArray) else joined


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


def _assemble(ds: Dataset, aug_table: pa.Table, aug_raw, src: np.ndarray, ops: np.ndarray, only_new: bool,
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


def _count_reasons(short: list[dict]) -> dict[str, int]:
    """How many rows came up short, by the kind of reason (numbers dropped)."""
    import re

    out: dict[str, int] = {}
    for s in short:
        kind = re.sub(r"\d+", "N", s["reason"])
        out[kind] = out.get(kind, 0) + 1
    return dict(sorted(out.items(), key=lambda kv: (-kv[1], kv[0])))


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
