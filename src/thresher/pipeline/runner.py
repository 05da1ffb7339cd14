"""Run steps over a pool: features on the whole pool (cached), each step on
the rows that reached it, and a trace of what each step removed and why."""
from __future__ import annotations

import json
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from thresher.core.arrays import count_distinct
from thresher.core.budget import Budget
from thresher.core.selection import Selection
from thresher.errors import InputError, ThresherError, UsageError
from thresher.pipeline.coverage import Coverage, CoverageSpec
from thresher.pipeline.registry import build_step, requirements, run_step

EXAMPLES_PER_REASON = 5


@dataclass
class StepSpec:
    name: str
    params: dict[str, Any]
    line: int | None = None  # where it was written, for errors


@dataclass
class RunResult:
    selection: Selection  # indices into the pool
    trace: list[dict[str, Any]]
    removed_parts: list[tuple[np.ndarray, str, str]] = field(default_factory=list)  # (pool rows, step, reason)
    coverage: dict[str, Any] | None = None  # per-category pool vs kept (pipeline.coverage)

    @property
    def removed(self) -> list[tuple[int, str, str]]:
        """(pool row, step, reason) for each removed row, in pool-row order."""
        return sorted((int(r), step, reason) for rows, step, reason in self.removed_parts for r in rows.tolist())


def run_steps(pool, steps: list[StepSpec], seed: int = 0, store=None, progress=None,
              recipe_path: str | None = None, coverage: CoverageSpec | None = None) -> RunResult:
    """Apply `steps` in order; each sees only the rows the previous ones kept.

    `coverage`: check (and, when the spec says so, enforce) per-category
    floors after every step (`pipeline.coverage`); None skips the check."""
    from thresher.features.store import FeatureStore

    store = store or FeatureStore()
    current = np.arange(len(pool), dtype=np.int64)
    trace, removed_rows = [], []
    last: Selection | None = None
    built = [_build(spec, seed, recipe_path) for spec in steps]
    guard = _guard(pool, coverage, store, progress, recipe_path)
    for (step, budget), spec in zip(built, steps):
        with _step_errors(spec, recipe_path):
            sel, cov_entry = _run_one(pool, step, budget, spec, current, seed, store, progress, guard)
        entry, rows = _trace_entry(pool, spec, budget, current, sel)
        if cov_entry is not None:
            entry["coverage"] = cov_entry
        trace.append(entry)
        removed_rows += rows
        current = current[sel.indices]
        last = sel
    report = guard.report(current) if guard is not None else None
    return RunResult(_final_selection(current, last, steps, len(pool), seed), trace, removed_rows, report)


def _run_one(pool, step, budget: Budget | None, spec: StepSpec, current: np.ndarray, seed: int, store, progress,
             guard: Coverage | None) -> tuple[Selection, dict[str, Any] | None]:
    from thresher.features.columns import load_features

    needed = requirements(step) + (["tokens"] if budget is not None and budget.kind == "tokens" else [])
    features = load_features(pool, needed, store=store, progress=progress)
    subset = pool if len(current) == len(pool) else pool.take(current)
    sliced = {k: v[current] for k, v in features.items()}
    sel = run_step(step, subset, budget, sliced, seed)
    if guard is None:
        return sel, None

    def rerun(local_rows: np.ndarray, n: int) -> np.ndarray:
        sub_features = {k: v[local_rows] for k, v in sliced.items()}
        return run_step(step, subset.take(local_rows), Budget("rows", float(n)), sub_features, seed).indices

    tokens = sliced.get("tokens") if budget is not None and budget.kind == "tokens" else None
    return guard.check_step(spec.name, budget, current, sel, rerun, tokens)


def _guard(pool, coverage: CoverageSpec | None, store, progress, recipe_path: str | None) -> Coverage | None:
    if coverage is None:
        return None
    try:
        return Coverage.build(coverage, pool, store=store, progress=progress)
    except UsageError as err:
        if recipe_path:
            raise InputError(recipe_path, str(err)) from None
        raise


@contextmanager
def _step_errors(spec: StepSpec, recipe_path: str | None) -> Iterator[None]:
    try:
        yield
    except ThresherError as err:
        if recipe_path:
            raise InputError(recipe_path, f"step {spec.name!r}: {err}", line=spec.line) from None
        raise type(err)(f"step {spec.name!r}: {err}") from None


def _build(spec: StepSpec, seed: int, recipe_path: str | None):
    try:
        return build_step(spec.name, spec.params, seed)
    except UsageError as err:
        if recipe_path:
            raise InputError(recipe_path, str(err), line=spec.line) from None
        raise


def _trace_entry(pool, spec: StepSpec, budget: Budget | None, current: np.ndarray,
                 sel: Selection) -> tuple[dict[str, Any], list[tuple[np.ndarray, str, str]]]:
    removed = dict(getattr(sel, "removed", {}) or {})
    accounted = sum(len(v) for v in removed.values())
    dropped_total = len(current) - count_distinct(sel.indices)
    if accounted < dropped_total:  # designs don't name reasons: whatever they left out was not drawn
        mask = np.ones(len(current), dtype=bool)
        mask[sel.indices] = False
        for rows in removed.values():
            mask[rows] = False
        removed["not drawn by the design" if spec.name == "sample" else "not selected"] = np.flatnonzero(mask)
    by_reason, examples, rows = {}, {}, []
    for reason, local in removed.items():
        pool_rows = current[np.asarray(local, dtype=np.int64)]
        by_reason[reason] = int(len(pool_rows))
        examples[reason] = pool.ids_of(pool_rows[:EXAMPLES_PER_REASON]).tolist()
        rows.append((pool_rows, spec.name, reason))
    entry = {"step": spec.name, "params": _plain(spec.params), "budget": budget.to_json() if budget else None,
             "rows_in": int(len(current)), "rows_out": int(len(sel.indices)), "removed": by_reason,
             "removed_examples": examples, "diagnostics": _plain(sel.diagnostics)}
    return entry, rows


def _final_selection(current: np.ndarray, last: Selection | None, steps: list[StepSpec], pool_size: int,
                     seed: int) -> Selection:
    """Pool-indexed result. pi/weights come from the last step when it is a probability
    design: they are then inclusion probabilities conditional on the earlier filters."""
    if last is None:
        nan = np.full(pool_size, np.nan)
        return Selection(np.arange(pool_size), nan, nan.copy(), "recipe", {"steps": []}, seed, pool_size)
    order = np.argsort(current, kind="stable")  # write in pool order
    pi, weights = last.pi[order], last.weights[order]
    method = steps[-1].name if len(steps) == 1 else "recipe"
    params = steps[-1].params if len(steps) == 1 else {"steps": [{s.name: s.params} for s in steps]}
    labels = {k: v[order] for k, v in last.labels.items()}
    diagnostics = dict(last.diagnostics) if len(steps) == 1 else {}
    if len(steps) > 1 and np.isfinite(pi).any():
        diagnostics["pi_note"] = f"pi is conditional on the rows that reached step {len(steps)} ({steps[-1].name})"
    return Selection(current[order], pi, weights, method, _plain(params), seed, pool_size, labels=labels,
                     strata=last.strata, diagnostics=_plain(diagnostics))


def _plain(obj: Any) -> Any:
    from thresher.core.selection import _jsonable

    return _jsonable(obj)


def write_removed(pool, removed: list[tuple[int, str, str]], path: Path) -> None:
    """`--keep-removed`: each removed row (original record) with its step and reason."""
    from thresher.data.writers import atomic_path

    rows = sorted(removed)
    ids = pool.ids_of(np.array([r for r, _, _ in rows], dtype=np.int64)) if rows else []
    # in_memory: a pool read shard by shard holds only its small columns here
    records = pool.take(np.array([r for r, _, _ in rows], dtype=np.int64)).in_memory().table.to_pylist() \
        if rows else []
    with atomic_path(path) as tmp:
        with tmp.open("w", encoding="utf-8") as f:
            for (row, step, reason), rid, rec in zip(rows, ids, records):
                f.write(json.dumps({"id": rid, "step": step, "reason": reason, "row": rec},
                                   ensure_ascii=False, default=str) + "\n")
