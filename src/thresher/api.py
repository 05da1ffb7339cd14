"""The Python API behind the CLI: read, sample, write subset + manifest."""
from __future__ import annotations

import json
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from thresher.core.budget import Budget
from thresher.core.selection import Selection
from thresher.data.dataset import Dataset
from thresher.data.manifest import build_manifest, dumps_manifest, manifest_path, rejects_path
from thresher.data.readers import Reject, read_dataset
from thresher.data.writers import atomic_path, check_output_path, output_format_for, write_subset
from thresher.errors import UsageError


def read(path: str | Path, **options) -> Dataset:
    """Read and validate a pool (JSONL, JSON, CSV, Parquet or a HF folder)."""
    return read_dataset(path, **options).dataset


def make_design(design: str, **params):
    from thresher.sampling.designs import DESIGNS

    if design not in DESIGNS:
        raise UsageError(f"unknown design {design!r}; choose one of {', '.join(sorted(DESIGNS))}")
    return DESIGNS[design](**params)


def sample(ds: Dataset, design: str = "random", n: int | None = None, fraction: float | None = None,
           seed: int | None = None, **params) -> Selection:
    """Draw a probability sample: `thresher.sample(ds, "stratified", n=1000, by=["task"], seed=0)`."""
    budget = Budget.parse(n=n, fraction=fraction)
    return make_design(design, random_state=seed, **params).select(ds, budget)


@dataclass
class WriteResult:
    output: Path
    manifest: Path
    rejects: Path | None
    manifest_data: dict[str, Any]


def write_selection(pool: Dataset, selection: Selection, out: str | Path, *, command: str,
                    budget: Budget | None = None, rejects: list[Reject] | None = None,
                    out_format: str | None = None, overwrite: bool = False,
                    weight_columns: bool = True, extra: dict | None = None) -> WriteResult:
    """Write the subset (input's format, pool order), its manifest and any rejects, atomically."""
    out = Path(out)
    man_path = manifest_path(out)
    rej_path = rejects_path(out) if rejects else None
    for target in [out, man_path] + ([rej_path] if rej_path else []):
        check_output_path(target, [pool.source.path], overwrite)
    fmt = output_format_for(out, pool.source.file_format, out_format)
    columns = {}
    if weight_columns and len(selection) and np.isfinite(selection.pi).all():
        columns = {"_pi": selection.pi, "_weight": selection.weights}
    manifest = build_manifest(pool, selection, out, fmt, command=command,
                              budget=budget.to_json() if budget else None,
                              rejects=len(rejects or []), rejects_file=rej_path, extra=extra)
    with ExitStack() as stack:
        write_subset(selection.take(pool), out, out_format=fmt, extra_columns=columns)
        if rej_path:
            tmp = stack.enter_context(atomic_path(rej_path))
            tmp.write_text("".join(json.dumps(r.to_json(), ensure_ascii=False) + "\n" for r in rejects),
                           encoding="utf-8")
        tmp = stack.enter_context(atomic_path(man_path))
        tmp.write_bytes(dumps_manifest(manifest))
    return WriteResult(out, man_path, rej_path, manifest)
