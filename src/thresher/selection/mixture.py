"""Multi-task mixtures: split a budget across tasks so that an adapter does
not favour the biggest one, then select inside each task.

Shares per task t with N_t pool rows:

- proportional: p_t ∝ N_t
- equal:        p_t ∝ 1 (tasks with rows)
- temperature:  p_t ∝ N_t^(1/T) (T = 1 is proportional, T → ∞ equal; the
  multilingual / multi-task "temperature sampling" of e.g. XLM and T5)
- explicit:     {task: share}, normalised; unlisted tasks get 0.

A task never gives more than it has (N_t rows, or its total tokens) nor more
than its cap; what a bounded task cannot take goes to the others in
proportion to their shares (water filling), and an exact integer split that
sums to the budget is made by largest remainder (`thresher.sampling.allocation`).
Caps are in the budget's unit: rows for row / fraction budgets, tokens for a
token budget.
"""
from __future__ import annotations

import inspect
import numbers
from typing import Any

import numpy as np

from thresher.core.budget import Budget, budget_rows, is_token_budget
from thresher.core.selection import Selection
from thresher.data.dataset import Dataset
from thresher.errors import UsageError
from thresher.sampling._common import (Design, check_field_name, check_number, check_random_state,
                                       grouped_order)
from thresher.sampling.allocation import largest_remainder, water_fill
from thresher.sampling.strata import strata
from thresher.selection.base import token_counts

PROPORTIONS = ("proportional", "equal", "temperature")
_REFILL_ROUNDS = 4


class MixtureSelector(Design):
    """Split the budget across the tasks of field `by`, then select inside each.

    Parameters
    ----------
    by: the task field (a dataset field, or a feature such as "cluster").
    proportions: "proportional", "equal", "temperature" or {task: share}.
    temperature: T of proportions="temperature" (> 0).
    caps: the most each task may get (rows, or tokens for a token budget):
        one int for every task or {task: cap}.
    within: what runs on each task's rows: a selector (`select(ds, budget,
        features)`), a sampling design (`select(ds, budget)`), a step name
        ("deita") or {step name: params} as in a recipe; None draws a simple
        random sample of each task.
    random_state: seed of the within-task random sample.

    The output lists tasks in label order, each in its within-selection order.
    """

    name = "mixture"
    method = "mixture"
    needs_budget = True

    def __init__(self, by: str = "task", proportions: str | dict[str, float] = "proportional",
                 temperature: float = 2.0, caps: int | dict[str, int] | None = None, within: Any = None,
                 random_state: int | np.random.Generator | None = None):
        self.by = by
        self.proportions = proportions
        self.temperature = temperature
        self.caps = caps
        self.within = within
        self.random_state = random_state
        check_field_name("by", by)
        if isinstance(proportions, dict):
            _check_mapping("proportions", proportions, integer=False)
        elif proportions not in PROPORTIONS:
            raise UsageError(f"proportions must be one of {', '.join(map(repr, PROPORTIONS))} or a dict "
                             f"{{task: share}}; got {proportions!r}")
        check_number("temperature", temperature, 0.0, low_open=True)
        if isinstance(caps, dict):
            _check_mapping("caps", caps, integer=True)
        elif caps is not None and (isinstance(caps, bool) or not isinstance(caps, numbers.Integral) or caps < 0):
            raise UsageError(f"caps must be a non-negative integer, a dict {{task: cap}} or None; got {caps!r}")
        check_random_state(random_state)
        self._within = _resolve_within(within, random_state)

    @property
    def requires(self) -> list[str]:
        inner = getattr(self._within, "requires", []) or []
        inner = list(inner() if callable(inner) else inner)
        return list(dict.fromkeys([self.by, *inner, "tokens"]))

    def get_params(self) -> dict[str, Any]:
        params = super().get_params()
        if self.within is not None and not isinstance(self.within, (str, dict)):
            params["within"] = repr(self.within)
        return params

    def select(self, ds: Dataset, budget: int | Budget,
               features: dict[str, np.ndarray] | None = None) -> Selection:
        """Allocate the budget to tasks and select inside each task."""
        codes, labels = self._tasks(ds, features)
        sizes = np.bincount(codes, minlength=len(labels))
        weights = mixture_weights(sizes, labels, self.proportions, float(self.temperature))
        tokens = token_counts(ds, features) if is_token_budget(budget) else None
        have = sizes.astype(np.float64) if tokens is None else np.bincount(codes, tokens, len(labels))
        total = float(budget.value) if tokens is not None else budget_rows(budget, len(ds))
        upper = np.floor(np.minimum(have, cap_vector(self.caps, labels)))
        upper[weights == 0] = 0
        alloc = allocate_mixture(weights, int(total), upper)
        rng = self._rng()
        grouped = grouped_order(codes, len(labels))
        bounds = np.concatenate([[0], np.cumsum(sizes)])

        def run(t: int, amount: int) -> tuple:
            return self._task(ds, features, grouped[bounds[t]:bounds[t + 1]], amount, tokens, rng)

        parts = [run(t, int(alloc[t])) for t in range(len(labels))]
        if tokens is None:
            alloc, parts = self._refill(weights, int(total), upper, alloc, parts, run)
        return self._assemble(ds, labels, sizes, weights, alloc, parts, tokens)

    def _refill(self, weights: np.ndarray, total: int, upper: np.ndarray, alloc: np.ndarray, parts: list,
                run) -> tuple[np.ndarray, list]:
        """A within-task selector may return fewer rows than its task's share
        (DEITA stops when the rest is redundant): cap such tasks at what they
        gave and hand the rest of the budget to the others, a few rounds."""
        for _ in range(_REFILL_ROUNDS):
            got = np.array([len(p[0]) for p in parts], dtype=np.float64)
            short = got < alloc
            if not short.any():
                break
            upper = np.where(short, got, upper)
            new = allocate_mixture(weights, int(min(total, upper.sum())), upper)
            if (new == alloc).all():
                break
            parts = [parts[t] if new[t] == alloc[t] else run(t, int(new[t])) for t in range(len(alloc))]
            alloc = new
        return alloc, parts

    def _tasks(self, ds: Dataset, features: dict[str, np.ndarray] | None) -> tuple[np.ndarray, list[str]]:
        """Task code per row and task labels: a dataset field, else a feature (e.g. "cluster")."""
        if self.by not in ds.fields and features is not None and self.by in features:
            values = np.asarray(features[self.by])
            if values.shape != (len(ds),):
                raise UsageError(f"feature '{self.by}' must hold one task per row ({len(ds)}), got {values.shape}")
            uniques, codes = np.unique(values.astype(str), return_inverse=True)
            return codes.astype(np.int64), uniques.tolist()
        tasks = strata(ds, [self.by])  # null is its own task, apart from any literal
        return tasks.codes, tasks.labels

    def _task(self, ds: Dataset, features: dict[str, np.ndarray] | None, rows: np.ndarray, amount: int,
              tokens: np.ndarray | None, rng: np.random.Generator) -> tuple:
        """One task's (pool rows, pi, weights, rows removed by reason): from
        `within`, or a random sample."""
        if self._within is None or amount == 0:
            picks = _random(rows, amount, tokens, rng)
            # A simple random sample of n_t of N_t rows: pi = n_t/N_t. The
            # token-budget prefix has no simple pi.
            pi = np.full(len(picks), amount / len(rows) if tokens is None and len(picks) else np.nan)
            return picks, pi, 1.0 / pi, {}
        sub_budget = Budget("tokens" if tokens is not None else "rows", float(amount))
        sub = ds.take(rows)
        if "features" in inspect.signature(self._within.select).parameters:
            sub_features = {k: np.asarray(v)[rows] for k, v in (features or {}).items()}
            sel = self._within.select(sub, sub_budget, features=sub_features)
        else:
            sel = self._within.select(sub, sub_budget)
        removed = {reason: rows[np.asarray(local, dtype=np.int64)]
                   for reason, local in (getattr(sel, "removed", None) or {}).items()}
        return rows[sel.indices], sel.pi, sel.weights, removed

    def _assemble(self, ds: Dataset, labels: list[str], sizes: np.ndarray, weights: np.ndarray,
                  alloc: np.ndarray, parts: list, tokens: np.ndarray | None) -> Selection:
        share = weights / weights.sum()
        records = []
        removed: dict[str, list[np.ndarray]] = {}
        for t, (rows, _, _, gone) in enumerate(parts):
            for reason, where in gone.items():
                removed.setdefault(f"{reason} (within {self.by} {labels[t]!r})", []).append(where)
            rec = {"stratum": labels[t], "pool": int(sizes[t]), "share": round(float(share[t]), 9),
                   "target": int(alloc[t]), "selected": int(len(rows))}
            if tokens is not None:
                rec["tokens_selected"] = float(tokens[rows].sum())
            records.append(rec)
        indices = np.concatenate([p[0] for p in parts]).astype(np.int64)
        task = np.repeat(np.asarray(labels, dtype=str), [len(p[0]) for p in parts])
        diagnostics: dict[str, Any] = {"by": self.by, "tasks": len(labels),
                                       "unit": "rows" if tokens is None else "tokens",
                                       "per_task": {r["stratum"]: r for r in records},
                                       "shortfall": int(alloc.sum()) - (len(indices) if tokens is None else
                                                                        int(tokens[indices].sum()))}
        if tokens is not None:
            diagnostics["tokens_used"] = float(tokens[indices].sum())
        sel = Selection(indices, np.concatenate([p[1] for p in parts]), np.concatenate([p[2] for p in parts]),
                        self.method, self.get_params(), self._seed(), len(ds), labels={"stratum": task},
                        strata=records, diagnostics=diagnostics)
        sel.removed = {reason: np.concatenate(rows) for reason, rows in removed.items()}  # the rest: not drawn
        return sel


# -- pure functions ------------------------------------------------------------
def mixture_weights(sizes: np.ndarray, labels: list[str], proportions: str | dict[str, float],
                    temperature: float = 2.0) -> np.ndarray:
    """Un-normalised share of each task (0 for empty tasks)."""
    sizes = np.asarray(sizes, dtype=np.float64)
    if isinstance(proportions, dict):
        unknown = sorted(set(map(str, proportions)) - set(labels))
        if unknown:
            raise UsageError(f"proportions name unknown task(s) {', '.join(map(repr, unknown))}; "
                             f"tasks: {', '.join(labels)}")
        w = np.array([float(proportions.get(label, 0.0)) for label in labels])
    elif proportions == "proportional":
        w = sizes.copy()
    elif proportions == "equal":
        w = np.ones(len(sizes))
    else:
        w = sizes ** (1.0 / temperature)
    w[sizes == 0] = 0.0
    if not w.sum() > 0:
        raise UsageError("every task with rows has share 0; give at least one task a positive share")
    return w


def cap_vector(caps: int | dict[str, int] | None, labels: list[str]) -> np.ndarray:
    """Per-task cap (inf where none)."""
    if caps is None:
        return np.full(len(labels), np.inf)
    if isinstance(caps, dict):
        unknown = sorted(set(map(str, caps)) - set(labels))
        if unknown:
            raise UsageError(f"caps name unknown task(s) {', '.join(map(repr, unknown))}; tasks: {', '.join(labels)}")
        return np.array([float(caps.get(label, np.inf)) for label in labels])
    return np.full(len(labels), float(caps))


def allocate_mixture(weights: np.ndarray, total: int, upper: np.ndarray) -> np.ndarray:
    """Integers per task ∝ weights, within [0, upper], summing to `total`
    (water filling, then largest remainder)."""
    room = float(upper.sum())
    if total > room:
        raise UsageError(f"the budget ({total:g}) exceeds what the tasks can give ({room:g}) after caps and "
                         f"task sizes; raise the caps, give more tasks a share, or lower the budget")
    lower = np.zeros(len(weights))
    target = water_fill(np.asarray(weights, dtype=np.float64), float(total), lower, upper)
    return largest_remainder(target, int(total), lower.astype(np.int64), upper.astype(np.int64))


def _random(rows: np.ndarray, amount: int, tokens: np.ndarray | None, rng: np.random.Generator) -> np.ndarray:
    """A simple random sample of `amount` rows (pool order), or for a token
    budget the random-order prefix of `rows` that fits `amount` tokens."""
    if amount == 0:
        return np.empty(0, dtype=np.int64)
    if tokens is None:
        return np.sort(rng.choice(rows, size=amount, replace=False, shuffle=False))
    perm = rows[rng.permutation(len(rows))]
    return perm[: int(np.searchsorted(np.cumsum(tokens[perm]), amount, side="right"))]


def _resolve_within(within: Any, random_state: Any) -> Any:
    """The within-task step: an object with select(), or one built from a
    step name / {name: params} through the step registry."""
    if within is None or callable(getattr(within, "select", None)):
        return within
    if isinstance(within, str):
        name, params = within, {}
    elif isinstance(within, dict) and len(within) == 1:
        name, params = next(iter(within.items()))
        params = dict(params or {})
    else:
        raise UsageError(f"within must be a selector, a step name or {{step name: params}}; got {within!r}")
    from thresher.pipeline.registry import BUDGET_KEYS, accepted_params, step_class

    if any(k in params for k in BUDGET_KEYS):
        raise UsageError(f"within {name!r}: the mixture gives each task its budget; drop n / fraction / tokens")
    cls = step_class(name)
    accepted = accepted_params(cls)
    if "random_state" not in params and (accepted is None or "random_state" in accepted):
        params["random_state"] = random_state
    try:
        return cls(**params)
    except TypeError as err:
        raise UsageError(f"within {name!r}: {err}") from None


def _check_mapping(name: str, mapping: dict, integer: bool) -> None:
    if not mapping:
        raise UsageError(f"{name} must not be empty")
    for key, v in mapping.items():
        ok = isinstance(v, numbers.Real) and not isinstance(v, bool) and np.isfinite(v) and v >= 0
        if ok and integer:
            ok = float(v).is_integer()
        if not ok:
            kind = "a non-negative integer" if integer else "a non-negative number"
            raise UsageError(f"{name}[{key!r}] must be {kind}, got {v!r}")
