"""Writing a selection: the subset (input's format, pool order), its rejects and
its manifest, together and atomically. Every stage that writes a subset (the
CLI commands, recipes, balance) goes through `write_selection`."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from thresher.core.budget import Budget
from thresher.core.selection import Selection
from thresher.data.dataset import Dataset
from thresher.data.manifest import build_manifest, output_paths, write_outputs
from thresher.data.readers import Reject
from thresher.data.writers import output_format_for, write_subset


@dataclass
class WriteResult:
    output: Path
    manifest: Path
    rejects: Path | None
    manifest_data: dict[str, Any]


def write_selection(pool: Dataset, selection: Selection, out: str | Path, *, command: str,
                    budget: Budget | None = None, rejects: list[Reject] | None = None,
                    out_format: str | None = None, overwrite: bool = False,
                    weight_columns: bool = True, extra: dict | None = None,
                    extra_columns: dict[str, np.ndarray] | None = None) -> WriteResult:
    """Write the subset (input's format, pool order), its manifest and any rejects, atomically.

    `extra_columns` are appended to every written row (e.g. balance's `_source_id`/`_copy`)."""
    out, man_path, rej_path = output_paths(Path(out), pool, overwrite, with_rejects=bool(rejects))
    fmt = output_format_for(out, pool.source.file_format, out_format)
    columns = {}
    if weight_columns and len(selection) and np.isfinite(selection.pi).all():
        columns = {"_pi": selection.pi, "_weight": selection.weights}
    columns.update(extra_columns or {})
    manifest = build_manifest(pool, selection, out, fmt, command=command,
                              budget=budget.to_json() if budget else None,
                              rejects=len(rejects or []), rejects_file=rej_path, extra=extra)
    write_outputs(lambda: write_subset(selection.take(pool), out, out_format=fmt, extra_columns=columns),
                  man_path, manifest, rej_path, rejects)
    return WriteResult(out, man_path, rej_path, manifest)
