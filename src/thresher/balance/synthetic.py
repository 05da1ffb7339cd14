"""Generated rows on disk: each kept candidate becomes a record in the pool's
own record format (alpaca, prompt_completion, messages or sharegpt), marked
`_synthetic` / `_generator` / `_category` with a content-derived id, and the
pool plus those rows (or only the new ones) is written atomically with a
deterministic manifest. Making the rows is `thresher.balance.generate`.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable

from thresher.errors import UsageError

if TYPE_CHECKING:
    from thresher.balance.generate import GenerationResult

WRITABLE_FORMATS = ("alpaca", "prompt_completion", "messages", "sharegpt")


def check_writable(pool) -> None:
    """A UsageError unless generated rows can be written in the pool's record format."""
    fmt = pool.source.record_format
    if fmt not in WRITABLE_FORMATS:
        raise UsageError(f"{pool.source.path}: generate writes new rows as alpaca, prompt_completion, messages "
                         f"or sharegpt records; this pool is {fmt!r} (it has no prompt/response pairs to imitate)")


def synthetic_records(pool, by: str, rows: list[dict[str, str]], generator: str) -> list[dict[str, Any]]:
    """Generated rows as records in the pool's format, marked `_synthetic`, `_generator`, `_category`."""
    import hashlib

    check_writable(pool)
    fmt, fmap = pool.source.record_format, dict(pool.source.field_map)
    col = lambda role: fmap.get(role, role)  # noqa: E731
    cast = _category_cast(pool, by)
    out = []
    for row in rows:
        p, r = row["prompt"], row["response"]
        rec: dict[str, Any] = {}
        if "id" in pool.fields:
            digest = hashlib.blake2b(f"{row['category']}\0{p}\0{r}".encode(), digest_size=8).hexdigest()
            rec["id"] = f"synthetic-{digest}"
        if fmt == "alpaca":
            rec[col("instruction")] = p
            if col("input") in pool.fields:
                rec[col("input")] = ""
            rec[col("output")] = r
        elif fmt == "prompt_completion":
            rec.update({col("prompt"): p, col("completion"): r})
        elif fmt == "messages":
            rec[col("messages")] = [{"role": "user", "content": p}, {"role": "assistant", "content": r}]
        else:
            rec[col("conversations")] = [{"from": "human", "value": p}, {"from": "gpt", "value": r}]
        rec[by] = cast(row["category"])
        rec.update({"_synthetic": True, "_generator": generator, "_category": row["category"]})
        out.append(rec)
    return out


def _category_cast(pool, by: str) -> Callable[[str], Any]:
    """Write the category back with the type the pool's field has (labels are strings)."""
    import pyarrow as pa

    typ = pool.table.schema.field(by).type if by in pool.fields else pa.string()
    if pa.types.is_integer(typ):
        return int
    if pa.types.is_floating(typ):
        return float
    return str


def write_generated(pool, result: GenerationResult, out, *, only_new: bool = False, out_format: str | None = None,
                    overwrite: bool = False, seed: int | None = None, command: str = "generate") -> dict[str, Any]:
    """Write pool + kept rows (or only the new ones) in the pool's format, atomically, with a
    `<stem>.manifest.json`; returns the manifest."""
    from pathlib import Path

    from thresher.data.manifest import output_paths, write_outputs
    from thresher.data.writers import output_format_for

    out, man_path, _ = output_paths(Path(out), pool, overwrite)
    fmt = output_format_for(out, pool.source.file_format, out_format)
    records = synthetic_records(pool, result.params["by"], result.rows, result.generator)
    manifest = _manifest(pool, result, out, fmt, records, only_new, seed, command)
    write_outputs(lambda: _write_rows(pool, records, out, fmt, only_new), man_path, manifest)
    return manifest


def _write_rows(pool, records: list[dict[str, Any]], out, fmt: str, only_new: bool) -> None:
    import json

    import pyarrow as pa

    from thresher.data.dataset import Dataset
    from thresher.data.writers import atomic_path, write_subset

    if fmt in ("jsonl", "json"):
        lines = [] if only_new else _pool_lines(pool)
        lines += [json.dumps(r, ensure_ascii=False).encode("utf-8") for r in records]
        if fmt == "jsonl":
            data = b"".join(line + b"\n" for line in lines)
        else:
            data = b"[\n" + b",\n".join(b"  " + line for line in lines) + (b"\n" if lines else b"") + b"]\n"
        with atomic_path(out) as tmp:
            tmp.write_bytes(data)
        return
    new = pa.Table.from_pylist(records)
    table = new if only_new else pa.concat_tables([pool.table, new], promote_options="permissive")
    write_subset(Dataset(table, pool.source), out, out_format=fmt)


def _pool_lines(pool) -> list[bytes]:
    import json

    if pool.raw is not None and pool.source.file_format in ("jsonl", "json"):
        return pool.raw.rows()  # byte for byte as read
    return [json.dumps(r, ensure_ascii=False, default=str).encode("utf-8") for r in pool.table.to_pylist()]


def _manifest(pool, result: GenerationResult, out, fmt: str, records, only_new: bool, seed, command: str) -> dict:
    """A deterministic record (no timings): same pool, model and seed, same bytes."""
    from thresher._version import __version__

    pool_rows = 0 if only_new else len(pool)
    summary = result.summary()
    manifest = {
        "thresher_version": __version__,
        "command": command,
        "input": {"path": pool.source.path, "sha256": pool.source.sha256, "rows": len(pool),
                  "format": pool.source.file_format, "record_format": pool.source.record_format},
        "output": {"path": str(out), "rows": pool_rows + len(records), "format": fmt, "pool_rows": pool_rows,
                   "synthetic_rows": len(records), "only_new": only_new},
        "method": "generate",
        "params": result.params,
        "seed": seed,
        **summary,
        "examples": result.examples,
        "diagnostics": result.diagnostics,
    }
    if records and "id" in records[0]:
        manifest["synthetic_ids"] = [r["id"] for r in records]
    return manifest
