"""The Python API behind the CLI: read, sample, write subset + manifest."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from thresher.core.budget import Budget
from thresher.core.selection import Selection
from thresher.data.dataset import Dataset
from thresher.data.manifest import build_manifest, output_paths, write_outputs
from thresher.data.readers import Reject, read_dataset
from thresher.data.writers import check_output_path, output_format_for, write_subset
from thresher.errors import InputError, UsageError


def read(path: str | Path, **options) -> Dataset:
    """Read and validate a pool (JSONL, JSON, CSV, Parquet or a HF folder)."""
    return read_dataset(path, **options).dataset


def attach_features(ds: Dataset, names: list[str], cache_dir: str | None = None) -> Dataset:
    """`ds` with feature columns (e.g. `response_words`, `cluster`) appended for the
    names it lacks as fields, so designs can stratify or size by features. The
    subset is still written from the original columns."""
    from thresher.selection.base import feature_sources, load_features

    wanted = [n for n in dict.fromkeys(names) if n and n not in ds.fields and n in feature_sources()]
    if not wanted:
        return ds
    table = ds.table
    for name, values in load_features(ds, wanted, cache_dir=cache_dir).items():
        if values.ndim == 1:
            table = table.append_column(name, pa.array(values))
    return Dataset(table, ds.source, ids=ds._ids, raw=ds.raw, origin_rows=ds.origin_rows)


def attach_kmeans(ds: Dataset, k: int | None, cache_dir: str | None = None) -> Dataset:
    """`ds` with a `cluster` column: k-means on the static embeddings (k=None: the default rule)."""
    from thresher.features.registry import make
    from thresher.features.store import FeatureStore

    if "cluster" in ds.fields:
        return ds
    params = {} if k is None else {"k": k}
    clusters = FeatureStore(cache_dir).get(ds, make("cluster", **params)).column("cluster")
    return Dataset(ds.table.append_column("cluster", clusters), ds.source, ids=ds._ids, raw=ds.raw,
                   origin_rows=ds.origin_rows)


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


def select(ds: Dataset, method: str, n: int | None = None, fraction: float | None = None,
           tokens: int | None = None, seed: int = 0, cache_dir: str | None = None,
           coverage: Any = None, **params) -> Selection:
    """Run one selector: `thresher.select(ds, method="deita", n=1000, seed=0)`.

    Features the selector needs are computed (and cached) on `ds`. `coverage`
    is a recipe's `coverage:` value ({min: K, by: FIELD, enforce: bool}, False:
    off; None: warn under 5 rows); the report is `selection.coverage`.
    """
    from thresher.features.store import FeatureStore
    from thresher.pipeline.coverage import CoverageSpec
    from thresher.pipeline.runner import StepSpec, run_steps

    budget = {k: v for k, v in (("n", n), ("fraction", fraction), ("tokens", tokens)) if v is not None}
    result = run_steps(ds, [StepSpec(method, {**params, **budget})], seed=seed, store=FeatureStore(cache_dir),
                       coverage=CoverageSpec.parse(coverage))
    result.selection.trace = result.trace
    result.selection.coverage = result.coverage
    return result.selection


def run_recipe(path: str | Path, *, overwrite: bool = False, keep_removed: bool = False,
               cache_dir: str | None = None, progress=None) -> dict[str, Any]:
    """Run a YAML recipe: read, steps with trace, write subset + manifest (+ removed rows)."""
    from thresher.features.store import FeatureStore
    from thresher.pipeline.coverage import CoverageSpec
    from thresher.pipeline.recipe import load_recipe, step_line
    from thresher.pipeline.runner import StepSpec, run_steps, write_removed

    recipe, lines = load_recipe(path)
    data = _resolve_near(recipe.data, Path(path))
    result = read_dataset(data, record_format=recipe.format, field_map=recipe.field_map, on_error=recipe.on_error)
    pool = result.dataset
    specs = [StepSpec(name, dict(params or {}), step_line(lines, i, name))
             for i, step in enumerate(recipe.steps) for name, params in step.items()]
    store = FeatureStore(cache_dir or recipe.cache)
    try:
        spec = CoverageSpec.parse(recipe.coverage)
    except UsageError as err:
        raise InputError(str(path), str(err), line=lines.get(("coverage",))) from None
    run = run_steps(pool, specs, seed=recipe.seed, store=store, progress=progress, recipe_path=str(path),
                    coverage=spec)
    out = Path(recipe.output.path)
    removed_path = out.with_name(f"{out.name if out.suffix == '' else out.stem}.removed.jsonl")
    if keep_removed or recipe.output.keep_removed:
        check_output_path(removed_path, [pool.source.path], overwrite or recipe.output.overwrite)
    written = write_selection(pool, run.selection, out, command="run", rejects=result.rejects,
                              out_format=recipe.output.format, overwrite=overwrite or recipe.output.overwrite,
                              extra_columns=_provenance_columns(pool, run.selection),
                              extra={"recipe": {"path": str(path), **recipe.model_dump(mode="json")},
                                     "trace": run.trace, "coverage": run.coverage})
    if keep_removed or recipe.output.keep_removed:
        write_removed(pool, run.removed, removed_path)
    return {"output": str(written.output), "manifest": str(written.manifest), "rows": len(run.selection),
            "pool_rows": len(pool), "trace": run.trace, "recipe": recipe,
            "removed_file": str(removed_path) if (keep_removed or recipe.output.keep_removed) else None,
            "pool": pool, "selection": run.selection, "coverage": run.coverage}


def _provenance_columns(pool: Dataset, selection: Selection) -> dict[str, np.ndarray]:
    """Columns a step asks to be written with its rows: balance's copy marks."""
    if "copy" not in selection.labels:
        return {}
    from thresher.balance.resample import output_columns

    return output_columns(pool, selection)


def _resolve_near(data: str, recipe_path: Path) -> str:
    """A relative data path is taken from the working directory, else next to the recipe."""
    candidate = Path(data)
    if candidate.is_absolute() or candidate.exists():
        return data
    beside = recipe_path.parent / data
    return str(beside) if beside.exists() else data
