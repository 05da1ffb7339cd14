"""Coverage guard: per-category pool vs kept counts for every step, a warning
when a category drops below a floor, and (when asked) enforcement.

Categories are a task field of the pool (`by`, else the first of
`TASK_FIELDS` the pool has), else k-means clusters of the static embedding.

What a category is measured against: a budgeted step (one with n / fraction /
tokens) must keep at least ``floor = min(K, rows of the category that reached
it)``. Filters (dedup, quality, a budget-less deita) are not held to K —
removing 1,040 copies of 10 unique rows is not a coverage loss — but a
filter that removes *every* row of a category is reported. With `enforce`,
a budgeted step that leaves a category under its floor is repaired: the step
is run again on that category's rows (so its own ranking picks the extra
rows; a seeded random draw fills any rest), and as many rows as were added
are dropped from the categories with the most rows above their floors (last
picked first), so the budget holds.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import numpy as np

from thresher.core.budget import Budget
from thresher.core.selection import Selection
from thresher.errors import ThresherError, UsageError

log = logging.getLogger("thresher.coverage")

TASK_FIELDS = ("task", "category", "label", "class", "topic", "domain")
DEFAULT_MIN = 5
OFF = ("none", "off")
SWAP_REASON = "coverage: swapped out for a category under its floor"


@dataclass(frozen=True)
class CoverageSpec:
    """`by`: category field (None: auto; "none": no coverage). `min`: the floor K.
    `enforce`: repair budgeted steps that leave a category under its floor."""

    by: str | None = None
    min: int = DEFAULT_MIN
    enforce: bool = False

    def __post_init__(self) -> None:
        if isinstance(self.min, bool) or not isinstance(self.min, (int, np.integer)) or self.min < 0:
            raise UsageError(f"coverage min must be a non-negative integer, got {self.min!r}")
        if self.by is not None and (not isinstance(self.by, str) or not self.by):
            raise UsageError(f"coverage by must be a field name or 'none', got {self.by!r}")

    @property
    def off(self) -> bool:
        return self.by is not None and self.by.lower() in OFF

    @classmethod
    def parse(cls, value: Any) -> "CoverageSpec":
        """From a recipe's `coverage:` (mapping {min, by, enforce}; False: off; None: defaults).
        Giving `min` enforces unless `enforce: false`."""
        if value is None or value is True:
            return cls()
        if value is False:
            return cls(by="none")
        if not isinstance(value, dict):
            raise UsageError(f"coverage must be a mapping {{min: K, by: FIELD, enforce: true}}, got {value!r}")
        unknown = sorted(set(value) - {"min", "by", "enforce"})
        if unknown:
            raise UsageError(f"coverage: unknown key(s) {', '.join(unknown)}; accepted: by, enforce, min")
        enforce = value.get("enforce", "min" in value)
        if not isinstance(enforce, bool):
            raise UsageError(f"coverage enforce must be true or false, got {enforce!r}")
        return cls(by=value.get("by"), min=value.get("min", DEFAULT_MIN), enforce=enforce)


class Coverage:
    """Category codes of a pool and the per-step bookkeeping of one run."""

    def __init__(self, spec: CoverageSpec, codes: np.ndarray, labels: list[str], by: str, source: str):
        self.spec, self.codes, self.labels, self.by, self.source = spec, codes, labels, by, source
        self.pool_counts = self.count(np.arange(len(codes)))
        self.available: np.ndarray | None = None  # counts at the first budgeted step
        self.warnings: list[str] = []

    @classmethod
    def build(cls, spec: CoverageSpec, pool, store=None, progress=None) -> "Coverage | None":
        if spec.off or len(pool) == 0:
            return None
        by = spec.by or next((f for f in TASK_FIELDS if f in pool.fields), None)
        if by is not None and by in pool.fields:
            codes, labels = pool.categorical([by])
            return cls(spec, codes, labels, by, "field")
        if by is not None and by != "cluster":
            raise UsageError(f"coverage: no field {by!r} in the pool (fields: {', '.join(pool.fields)}); "
                             f"use --coverage-by FIELD, 'cluster' or 'none'")
        from thresher.features.columns import load_features

        clusters = np.asarray(load_features(pool, ["cluster"], store=store, progress=progress)["cluster"])
        uniques, codes = np.unique(clusters, return_inverse=True)
        return cls(spec, codes.astype(np.int64), [f"cluster {u}" for u in uniques.tolist()], "cluster", "clusters")

    def count(self, rows: np.ndarray) -> np.ndarray:
        return np.bincount(self.codes[np.asarray(rows, dtype=np.int64)], minlength=len(self.labels))

    # -- one step ------------------------------------------------------------
    def check_step(self, step_name: str, budget: Budget | None, current: np.ndarray, sel: Selection,
                   rerun, tokens: np.ndarray | None = None) -> tuple[Selection, dict[str, Any]]:
        """The step's selection (repaired when enforcing) and its coverage trace entry.
        `current`: pool rows the step saw; `rerun(local_rows, n)`: the step's picks
        (positions into `local_rows`) on those rows with a budget of n rows;
        `tokens`: per local row, for a token budget."""
        budgeted = budget is not None
        before = self.count(current)
        local_codes = self.codes[current]
        entry: dict[str, Any] = {}
        if budgeted:
            if self.available is None:
                self.available = before
            floor = np.minimum(self.spec.min, before)
            after = np.bincount(local_codes[np.unique(sel.indices)], minlength=len(self.labels))
            if self.spec.enforce and (after < floor).any():
                self._check_room(budget, floor, len(current))
                limit = (tokens, float(budget.value)) if budget.kind == "tokens" and tokens is not None else None
                sel, added, dropped = enforce_floor(sel, local_codes, floor, rerun, limit)
                entry.update(added=self._named(added), dropped=self._named(dropped))
            after = np.bincount(local_codes[np.unique(sel.indices)], minlength=len(self.labels))
            short = np.flatnonzero(after < floor)
            if len(short):
                self._warn(f"step {step_name!r} left {self._some(short)} under {self.spec.min} rows "
                           f"(kept/reached): " + _list(self.labels, short, after, before))
        else:
            after = np.bincount(local_codes[np.unique(sel.indices)], minlength=len(self.labels))
            gone = np.flatnonzero((before > 0) & (after == 0))
            if len(gone):
                self._warn(f"step {step_name!r} removed every row of {self._some(gone)}: "
                           + _list(self.labels, gone, after, before))
        changed = np.flatnonzero(after != before)
        entry["per_category"] = {self.labels[c]: [int(before[c]), int(after[c])] for c in changed.tolist()}
        return sel, entry

    def _check_room(self, budget: Budget, floor: np.ndarray, rows_in: int) -> None:
        if budget.kind == "tokens":
            return
        room = budget.rows(rows_in)
        if int(floor.sum()) > room:
            raise UsageError(f"coverage: a floor of {self.spec.min} rows for {int((floor > 0).sum())} {self.by} "
                             f"values needs {int(floor.sum())} rows, more than the budget ({room}); lower "
                             f"--min-per-category / coverage min, raise the budget, or choose coarser categories")

    def _some(self, which: np.ndarray) -> str:
        return f"{len(which)} of {len(self.labels)} {self.by} values"

    def _named(self, counts: np.ndarray) -> dict[str, int]:
        return {self.labels[c]: int(counts[c]) for c in np.flatnonzero(counts).tolist()}

    def _warn(self, message: str) -> None:
        self.warnings.append(message)
        log.info("coverage: %s", message)  # the CLI prints them; the API returns them in the report

    # -- the whole run -------------------------------------------------------
    def report(self, kept: np.ndarray) -> dict[str, Any]:
        """Per category: pool rows, rows the budgeted selection could choose from
        (`available`), rows kept, the floor min(K, available) and whether it holds."""
        kept_counts = self.count(np.unique(kept))
        available = self.available if self.available is not None else kept_counts
        floor = np.minimum(self.spec.min, available)
        rows = [{"category": self.labels[c], "pool": int(self.pool_counts[c]), "available": int(available[c]),
                 "kept": int(kept_counts[c]), "floor": int(floor[c]), "ok": bool(kept_counts[c] >= floor[c])}
                for c in range(len(self.labels))]
        below = [r["category"] for r in rows if not r["ok"]]
        vanished = [r["category"] for r in rows if r["pool"] > 0 and r["kept"] == 0]
        return {"by": self.by, "source": self.source, "min": int(self.spec.min), "enforced": self.spec.enforce,
                "categories": len(rows), "below": below, "vanished": vanished,
                "min_kept": int(kept_counts.min()) if len(rows) else 0, "per_category": rows,
                "warnings": list(self.warnings)}


def enforce_floor(sel: Selection, codes: np.ndarray, floor: np.ndarray, rerun,
                  max_tokens: tuple[np.ndarray, float] | None = None) -> tuple[Selection, np.ndarray, np.ndarray]:
    """Top up every category under `floor` (codes: category of each local row),
    then give back as many rows from the categories furthest above their floors.
    Returns the new selection and the rows added / dropped per category."""
    k = len(floor)
    picked = np.asarray(sel.indices, dtype=np.int64)
    taken = np.zeros(len(codes), dtype=bool)
    taken[picked] = True
    have = np.bincount(codes[picked[_first(picked)]], minlength=k)
    extra = [_top_up(c, int(floor[c] - have[c]), codes, taken, rerun, sel.seed)
             for c in np.flatnonzero(have < floor).tolist()]
    extra_rows = np.concatenate(extra) if extra else np.empty(0, dtype=np.int64)
    added = np.bincount(codes[extra_rows], minlength=k)
    keep_pos = _give_back(picked, codes, floor, len(extra_rows), max_tokens, extra_rows)
    dropped_pos = np.setdiff1d(np.arange(len(picked)), keep_pos)
    dropped = np.bincount(codes[picked[dropped_pos]], minlength=k)
    return _rebuilt(sel, keep_pos, extra_rows, codes, picked[dropped_pos]), added, dropped


def _top_up(c: int, need: int, codes: np.ndarray, taken: np.ndarray, rerun, seed) -> np.ndarray:
    """`need` untaken rows of category c: the step's own picks on that category first."""
    rows = np.flatnonzero(codes == c)
    free = rows[~taken[rows]]
    chosen = np.empty(0, dtype=np.int64)
    try:
        ask = min(len(rows), int(taken[rows].sum()) + need)  # the rerun's top picks may repeat kept rows
        local = np.asarray(rerun(rows, ask), dtype=np.int64)
        again = rows[local]
        chosen = again[~taken[again]]
        chosen = chosen[_first(chosen)][:need]
    except ThresherError as err:  # the step cannot run on so few rows: fall back to a random draw
        log.info("coverage: re-running the step on one category failed (%s); drawing at random", err)
    if len(chosen) < need:
        rest = np.setdiff1d(free, chosen)
        rng = np.random.default_rng(seed if isinstance(seed, (int, np.integer)) else 0)
        chosen = np.concatenate([chosen, rng.permutation(rest)[: need - len(chosen)]])
    taken[chosen] = True
    return chosen.astype(np.int64)


def _give_back(picked: np.ndarray, codes: np.ndarray, floor: np.ndarray, n_added: int,
               max_tokens: tuple[np.ndarray, float] | None, extra: np.ndarray) -> np.ndarray:
    """Positions of `picked` to keep after dropping rows from the categories with
    the most rows above their floors, last picked first: `n_added` rows for a
    row budget, or until the added rows' tokens fit a token budget."""
    k = len(floor)
    counts = np.bincount(codes[picked], minlength=k)
    drop = np.zeros(len(picked), dtype=bool)
    # position of each picked row within its category, counted from the end
    order = np.lexsort((-np.arange(len(picked)), codes[picked]))
    rank_from_end = np.empty(len(picked), dtype=np.int64)
    starts = np.concatenate([[0], np.cumsum(counts)])
    rank_from_end[order] = np.arange(len(picked)) - starts[codes[picked][order]]
    if max_tokens is None:
        budget_left, cost = n_added, None
    else:
        tokens, limit = max_tokens
        budget_left = float(tokens[picked].sum() + tokens[extra].sum() - limit)
        cost = tokens
    surplus = np.maximum(counts - floor, 0)
    removed = np.zeros(k, dtype=np.int64)
    while budget_left > 0 and (surplus - removed).max(initial=0) > 0:  # at most one pass per dropped row
        c = int(np.argmax(counts - removed - np.where(surplus - removed > 0, 0, np.inf)))
        pos = np.flatnonzero((codes[picked] == c) & (rank_from_end == removed[c]))[0]
        drop[pos] = True
        removed[c] += 1
        budget_left -= 1 if cost is None else float(cost[picked[pos]])
    return np.flatnonzero(~drop)


def _rebuilt(sel: Selection, keep_pos: np.ndarray, extra: np.ndarray, codes: np.ndarray,
             dropped_rows: np.ndarray) -> Selection:
    indices = np.concatenate([sel.indices[keep_pos], extra]).astype(np.int64)
    nan = np.full(len(indices), np.nan)  # a repaired design no longer has its stated probabilities
    labels = {name: _pad(values[keep_pos], len(extra)) for name, values in sel.labels.items()}
    diagnostics = dict(sel.diagnostics)
    diagnostics["coverage_repair"] = {"added": int(len(extra)), "dropped": int(len(dropped_rows))}
    if np.isfinite(sel.pi).any():
        diagnostics["pi_note"] = "pi/weights dropped: the coverage floor changed the design's selection"
    out = Selection(indices, nan, nan.copy(), sel.method, sel.params, sel.seed, sel.pool_size, labels=labels,
                    strata=sel.strata, diagnostics=diagnostics)
    removed = {reason: np.setdiff1d(rows, extra) for reason, rows in (sel.removed or {}).items()}
    removed = {reason: rows for reason, rows in removed.items() if len(rows)}
    if len(dropped_rows):
        removed[SWAP_REASON] = np.setdiff1d(dropped_rows, indices)
    out.removed = removed
    return out


def _pad(values: np.ndarray, n: int) -> np.ndarray:
    values = np.asarray(values)
    if values.dtype.kind in "US":
        return np.concatenate([values.astype(str), np.full(n, "coverage", dtype=str)])
    if values.dtype.kind == "O":
        return np.concatenate([values, np.full(n, "coverage", dtype=object)])
    return np.concatenate([values.astype(np.float64), np.full(n, np.nan)])


def _first(rows: np.ndarray) -> np.ndarray:
    """Positions of the first occurrence of each value of `rows`, in order."""
    _, first = np.unique(rows, return_index=True)
    return np.sort(first)


def _list(labels: list[str], which: np.ndarray, after: np.ndarray, before: np.ndarray, limit: int = 12) -> str:
    shown = ", ".join(f"{labels[c]} {int(after[c])}/{int(before[c])}" for c in which[:limit].tolist())
    return shown + (f", ... ({len(which) - limit} more)" if len(which) > limit else "")
