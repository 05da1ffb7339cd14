"""The Python API behind the CLI: read, sample, select, run_recipe, write subset + manifest.

The public face only: the work lives in the layers below (`write_selection` in
`thresher.data.output`, designs in `thresher.sampling`, feature columns in
`thresher.features.columns`); the names are re-exported here."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from thresher.core.selection import Selection
from thresher.data.dataset import Dataset
from thresher.data.output import WriteResult, write_selection
from thresher.data.readers import read_dataset
from thresher.data.writers import check_output_path
from thresher.errors import InputError, UsageError
from thresher.features.columns import attach_features, attach_kmeans
from thresher.sampling.designs import make_design, sample

__all__ = ["WriteResult", "attach_features", "attach_kmeans", "make_design", "read", "run_recipe", "sample",
           "select", "write_selection"]


def read(path: str | Path, **options) -> Dataset:
    """Read and validate a pool (JSONL, JSON, CSV, Parquet or a HF folder)."""
    return read_dataset(path, **options).dataset


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
               cache_dir: str | None = None, progress=None, executor: str | None = None,
               ray_address: str | None = None) -> dict[str, Any]:
    """Run a YAML recipe: read, steps with trace, write subset + manifest (+ removed rows).

    `executor` ("local" / "ray") and `ray_address` override the recipe's `executor:`."""
    from thresher.features.execution import use_executor
    from thresher.features.store import FeatureStore
    from thresher.pipeline.coverage import CoverageSpec
    from thresher.pipeline.executors import make_executor, manifest_fields, read_pool
    from thresher.pipeline.recipe import load_recipe, step_line
    from thresher.pipeline.runner import StepSpec, run_steps, write_removed

    recipe, lines = load_recipe(path)
    try:
        chosen = make_executor(executor or recipe.executor, address=ray_address)
    except UsageError as err:
        raise InputError(str(path), str(err), line=lines.get(("executor",))) from None
    data = _resolve_near(recipe.data, Path(path))
    with use_executor(chosen):  # under ray, the pool is read shard by shard on the workers
        result = read_pool(data, record_format=recipe.format, field_map=recipe.field_map, on_error=recipe.on_error)
    pool = result.dataset
    specs = [StepSpec(name, dict(params or {}), step_line(lines, i, name))
             for i, step in enumerate(recipe.steps) for name, params in step.items()]
    store = FeatureStore(cache_dir or recipe.cache)
    try:
        spec = CoverageSpec.parse(recipe.coverage)
    except UsageError as err:
        raise InputError(str(path), str(err), line=lines.get(("coverage",))) from None
    with use_executor(chosen):
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
                                     "trace": run.trace, "coverage": run.coverage,
                                     **manifest_fields(chosen)})
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
