"""The JSON manifest written next to every subset: what was picked, how, from what."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from thresher._version import __version__
from thresher.core.selection import Selection, _jsonable
from thresher.data.dataset import Dataset


def manifest_path(out: Path) -> Path:
    """`picked.jsonl` -> `picked.manifest.json` (a folder output gets a sibling file)."""
    stem = out.name if out.suffix == "" else out.stem
    return out.with_name(f"{stem}.manifest.json")


def rejects_path(out: Path) -> Path:
    stem = out.name if out.suffix == "" else out.stem
    return out.with_name(f"{stem}.rejects.jsonl")


def output_paths(out: Path, pool: Dataset, overwrite: bool, with_rejects: bool = False,
                 out_format: str | None = None) -> tuple[Path, Path, Path | None]:
    """(data, manifest, rejects or None) paths of an output, each checked against the
    output-path policy (`thresher.data.paths`): none may be or hold the input, and
    none may exist unless `overwrite`."""
    from thresher.data.paths import check_output_path

    out = Path(out)
    check_output_path(out, [pool.source.path], overwrite, kind=_output_kind(out, pool, out_format))
    man_path = manifest_path(out)
    rej_path = rejects_path(out) if with_rejects else None
    for target in [man_path] + ([rej_path] if rej_path else []):
        check_output_path(target, [pool.source.path], overwrite, kind="file")
    return out, man_path, rej_path


def _output_kind(out: Path, pool: Dataset, out_format: str | None) -> str | None:
    """"hf" or "file" when known; None (decided at the write) when only a bare path was given."""
    from thresher.data.writers import output_format_for

    if out_format is None and out.suffix == "":
        return None
    return "hf" if output_format_for(out, pool.source.file_format, out_format) == "hf" else "file"


def write_outputs(write_data, man_path: Path, manifest: dict[str, Any], rej_path: Path | None = None,
                  rejects: list | None = None) -> None:
    """Write the data (`write_data()`, atomic itself), the rejects and the manifest, each atomically."""
    from contextlib import ExitStack

    from thresher.data.writers import atomic_path

    with ExitStack() as stack:
        write_data()
        if rej_path:
            tmp = stack.enter_context(atomic_path(rej_path))
            # backslashreplace: a stray surrogate becomes a \uXXXX escape, still valid JSON
            tmp.write_bytes("".join(json.dumps(r.to_json(), ensure_ascii=False) + "\n" for r in rejects)
                            .encode("utf-8", "backslashreplace"))
        tmp = stack.enter_context(atomic_path(man_path))
        tmp.write_bytes(dumps_manifest(manifest))


def build_manifest(pool: Dataset, selection: Selection, out: Path, out_format: str, *,
                   command: str, budget: dict | None = None, rejects: int = 0,
                   rejects_file: Path | None = None, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """A deterministic record (no timestamps): same inputs and seed, same bytes."""
    ids = pool.ids_of(selection.indices).tolist()
    body = selection.manifest()
    manifest: dict[str, Any] = {
        "thresher_version": __version__,
        "command": command,
        "input": {
            "path": pool.source.path,
            "sha256": pool.source.sha256,
            "rows": len(pool),
            "format": pool.source.file_format,
            "record_format": pool.source.record_format,
            "rejected_rows": rejects,
        },
        "output": {"path": str(out), "rows": len(selection), "format": out_format},
        "method": body["method"],
        "params": body["params"],
        "seed": body["seed"],
        "budget": budget,
        "selected_ids": ids,
        "pi": body["pi"],
        "weights": body["weights"],
    }
    if body["strata"] is not None:
        manifest["strata"] = body["strata"]
    manifest["diagnostics"] = body["diagnostics"]
    if rejects_file is not None:
        manifest["rejects_file"] = str(rejects_file)
    if extra:
        manifest.update(_jsonable(extra))
    return manifest


def dumps_manifest(manifest: dict[str, Any]) -> bytes:
    """One top-level key per line, each value compact: readable with `head`, and
    fast (the C encoder) for manifests holding millions of ids."""
    lines = [f"  {json.dumps(key, ensure_ascii=False)}: {json.dumps(value, ensure_ascii=False, allow_nan=False)}"
             for key, value in manifest.items()]
    return ("{\n" + ",\n".join(lines) + "\n}\n").encode("utf-8")


def load_manifest(path: Path) -> dict[str, Any]:
    from thresher.errors import InputError

    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise InputError(str(path), f"not a readable manifest ({err})") from None
