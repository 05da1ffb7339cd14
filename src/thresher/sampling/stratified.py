"""Stratified sampling: cells from one or several fields, an exact integer
allocation, and a simple random sample within every cell."""
from __future__ import annotations

import logging
import numbers
from dataclasses import dataclass, field

import numpy as np

from thresher.core.budget import Budget, budget_rows
from thresher.core.selection import Selection
from thresher.data.dataset import Dataset
from thresher.errors import UsageError
from thresher.sampling._common import (Design, check_choice, check_field_name, check_int,
                                       check_random_state, check_without_replacement, label_array,
                                       grouped_order, numeric_column, srs_within_groups)
from thresher.sampling.allocation import ALLOCATIONS, allocate, allocation_weights
from thresher.sampling.strata import Strata, strata

log = logging.getLogger(__name__)

THIN_POLICIES = ("take-all", "collapse", "error")


@dataclass
class StratumPlan:
    """The cells of a pool and the rows each one gets (no randomness yet)."""

    codes: np.ndarray  # cell of every pool row
    labels: list[str]
    sizes: np.ndarray
    counts: np.ndarray
    target: np.ndarray
    sd: np.ndarray | None
    thin: np.ndarray
    collapsed: list[dict] = field(default_factory=list)

    @property
    def pi(self) -> np.ndarray:
        """Inclusion probability n_h/N_h of the rows of each cell."""
        return self.counts / np.maximum(self.sizes, 1)


class StratifiedSampler(Design):
    """Stratified simple random sampling.

    Cells are the observed combinations of the `by` fields (keyed by the
    tuple of values, labelled "a|b"; see `thresher.sampling.strata`).
    `allocation` splits the budget (see `thresher.sampling.allocation`):
    proportional, equal, neyman (n_h ∝ N_h·S_h, with S_h the per-stratum sd
    of `variance_of` or given in `sd`) or optimal (n_h ∝ N_h·S_h/sqrt(c_h),
    with c_h given per stratum in `cost`, or the mean of the numeric field
    `cost_of` over the stratum's rows). Every cell gets between `min_per_stratum` and
    `max_per_stratum` rows and never more than it has; the total is exactly n.
    Within a cell, rows are a simple random sample: pi_h = n_h/N_h.

    A cell is *thin* when N_h < min_per_stratum or when the allocation asks
    for more rows than it has. `thin` says what to do: "take-all" takes the
    whole cell and re-allocates the rest; "collapse" merges it into its
    nearest cell (see `strata_cells.collapse_thin`); "error" stops and names it.
    """

    method = "stratified"

    def __init__(self, by: str | list[str], allocation: str = "proportional", variance_of: str | None = None,
                 sd: dict[str, float] | None = None, cost: dict[str, float] | None = None,
                 cost_of: str | None = None, min_per_stratum: int = 0, max_per_stratum: int | None = None, thin: str = "take-all",
                 random_state: int | np.random.Generator | None = None):
        self.by = by
        self.allocation = allocation
        self.variance_of = variance_of
        self.sd = sd
        self.cost = cost
        self.cost_of = cost_of
        self.min_per_stratum = min_per_stratum
        self.max_per_stratum = max_per_stratum
        self.thin = thin
        self.random_state = random_state
        self._validate()

    def _validate(self) -> None:
        fields = [self.by] if isinstance(self.by, str) else self.by
        if not isinstance(fields, (list, tuple)) or not fields or not all(isinstance(f, str) and f for f in fields):
            raise UsageError(f"by must be a field name or a non-empty list of field names, got {self.by!r}")
        check_choice("allocation", self.allocation, ALLOCATIONS)
        check_field_name("variance_of", self.variance_of, allow_none=True)
        _check_per_stratum("sd", self.sd, positive=False)
        _check_per_stratum("cost", self.cost, positive=True)
        if self.allocation in ("neyman", "optimal"):
            if (self.variance_of is None) == (self.sd is None):
                raise UsageError(f"allocation={self.allocation!r} needs exactly one of variance_of=FIELD "
                                 f"(per-stratum sd from the data) or sd={{stratum: sd}}")
        elif self.variance_of is not None or self.sd is not None:
            raise UsageError("variance_of / sd are only used by allocation='neyman' or 'optimal'")
        check_field_name("cost_of", self.cost_of, allow_none=True)
        if self.cost is not None and self.cost_of is not None:
            raise UsageError("give cost={stratum: cost} (--costs) or cost_of=FIELD (--cost), not both")
        if self.allocation == "optimal" and self.cost is None and self.cost_of is None:
            raise UsageError("allocation='optimal' needs per-stratum costs: cost={stratum: cost per row} "
                             "(CLI: --costs JSON) or cost_of=FIELD, a per-row cost whose stratum mean is c_h "
                             "(CLI: --cost FIELD); with equal costs use allocation='neyman'")
        if self.allocation != "optimal" and (self.cost is not None or self.cost_of is not None):
            raise UsageError("cost / cost_of are only used by allocation='optimal'")
        check_int("min_per_stratum", self.min_per_stratum, 0)
        check_int("max_per_stratum", self.max_per_stratum, 1, allow_none=True)
        if self.max_per_stratum is not None and self.max_per_stratum < self.min_per_stratum:
            raise UsageError(f"max_per_stratum={self.max_per_stratum} is below "
                             f"min_per_stratum={self.min_per_stratum}")
        check_choice("thin", self.thin, THIN_POLICIES)
        check_random_state(self.random_state)

    @property
    def fields(self) -> list[str]:
        return [self.by] if isinstance(self.by, str) else list(self.by)

    # -- planning ------------------------------------------------------------
    def plan(self, ds: Dataset, budget: int | Budget) -> StratumPlan:
        """Cells, thin-cell handling and the integer allocation for this pool."""
        n = budget_rows(budget, len(ds))
        check_without_replacement(n, len(ds))
        cells_of = strata(ds, self.fields)
        codes, labels = cells_of.codes, cells_of.labels
        cells = Cells(codes, labels, self._moments(ds, codes, len(labels)), self._given(self.sd, cells_of, "sd"),
                      self._cost(ds, cells_of))
        collapsed: list[dict] = []
        if self.thin == "collapse":
            collapsed = _collapse_thin(cells, ds, self.fields, lambda c: self._thin_mask(c, n))
        sd = cells.sd() if self.allocation in ("neyman", "optimal") else None
        thin = self._thin_mask(cells, n)
        if self.thin == "error" and thin.any():
            raise UsageError(self._thin_message(cells, n, thin))
        alloc = allocate(cells.sizes, n, self.allocation, sd=sd, cost=cells.cost(),
                         min_per_stratum=self.min_per_stratum, max_per_stratum=self.max_per_stratum)
        return StratumPlan(cells.row_codes(), cells.labels, cells.sizes, alloc.counts, alloc.target, sd, thin,
                           collapsed)

    def _wanted(self, cells: Cells, n: int) -> np.ndarray:
        """Rows the allocation would give each cell before any bound."""
        sd = cells.sd() if self.allocation in ("neyman", "optimal") else None
        w = allocation_weights(cells.sizes, self.allocation, sd, cells.cost())
        return n * w / w.sum() if w.sum() > 0 else np.zeros(len(w))

    def _thin_mask(self, cells: Cells, n: int) -> np.ndarray:
        return (cells.sizes < self.min_per_stratum) | (self._wanted(cells, n) > cells.sizes + 1e-9)

    def _thin_message(self, cells: Cells, n: int, thin: np.ndarray) -> str:
        wanted = self._wanted(cells, n)
        parts = []
        for h in np.flatnonzero(thin)[:5]:
            need = max(self.min_per_stratum, wanted[h])
            parts.append(f"'{cells.labels[h]}' has {int(cells.sizes[h])} rows but needs {need:.4g}")
        more = f" (and {int(thin.sum()) - 5} more)" if thin.sum() > 5 else ""
        return ("thin strata: " + "; ".join(parts) + more + ". Use thin='take-all' to take such strata whole, "
                "thin='collapse' to merge them into a neighbour, or lower min_per_stratum / the budget")

    def _moments(self, ds: Dataset, codes: np.ndarray, n_cells: int) -> np.ndarray | None:
        """Per-cell (count, sum, sum of squares) of `variance_of` (missing values ignored)."""
        if self.variance_of is None:
            return None
        y = numeric_column(ds, self.variance_of, "variance_of", allow_nan=True)
        ok = np.isfinite(y)
        if not ok.any():
            raise UsageError(f"{ds.source.path}: field '{self.variance_of}' (variance_of) has no numeric values")
        c, v = codes[ok], y[ok] - y[ok].mean()  # centred: sums of squares stay accurate
        return np.stack([np.bincount(c, minlength=n_cells).astype(np.float64),
                         np.bincount(c, weights=v, minlength=n_cells),
                         np.bincount(c, weights=v * v, minlength=n_cells)], axis=1)

    def _given(self, values: dict | None, cells_of: Strata, what: str) -> np.ndarray | None:
        if values is None:
            return None
        known = set(cells_of.labels) | set(cells_of.keys) | {k[0] for k in cells_of.keys if len(k) == 1}
        unknown = sorted(map(str, set(values) - known))
        if unknown:
            log.warning("%s names strata not in the data: %s", what, ", ".join(unknown[:10]))
        return cells_of.lookup(values, what)

    def _cost(self, ds: Dataset, cells_of: Strata) -> np.ndarray | None:
        """c_h: given per stratum, or the mean of `cost_of` over the stratum's rows."""
        if self.cost_of is None:
            return self._given(self.cost, cells_of, "cost")
        c = numeric_column(ds, self.cost_of, "cost_of")
        if (c <= 0).any():
            row = int(np.flatnonzero(c <= 0)[0])
            raise UsageError(f"{ds.source.path}: field '{self.cost_of}' (cost_of) must be a positive cost per row; "
                             f"row {row + 1} has {c[row]:g}")
        size = np.bincount(cells_of.codes, minlength=len(cells_of.labels))
        return np.bincount(cells_of.codes, weights=c, minlength=len(size)) / size

    # -- drawing -------------------------------------------------------------
    def inclusion_probabilities(self, ds: Dataset, budget: int | Budget) -> np.ndarray:
        """pi of every pool row: n_h/N_h of its stratum."""
        plan = self.plan(ds, budget)
        return plan.pi[plan.codes]

    def select(self, ds: Dataset, budget: int | Budget) -> Selection:
        """Draw n_h rows at random from every stratum; indices in pool order."""
        plan = self.plan(ds, budget)
        indices = srs_within_groups(plan.codes, plan.sizes, plan.counts, self._rng())
        cell = plan.codes[indices]
        pi = plan.pi[cell]
        return Selection(
            indices=indices, pi=pi, weights=1.0 / pi, method=self.method, params=self.get_params(),
            seed=self._seed(), pool_size=len(ds), labels={"stratum": label_array(plan.labels, cell)},
            strata=self._records(plan), diagnostics=self._diagnostics(plan),
        )

    def _records(self, plan: StratumPlan) -> list[dict]:
        pis = plan.pi
        rows = []
        for h, label in enumerate(plan.labels):
            rec = {"stratum": label, "pool": int(plan.sizes[h]), "selected": int(plan.counts[h]),
                   "pi": float(pis[h]), "target": round(float(plan.target[h]), 6)}
            if plan.sd is not None:
                rec["sd"] = float(plan.sd[h])
            if plan.thin[h]:
                rec["thin"] = True
            rows.append(rec)
        return rows

    def _diagnostics(self, plan: StratumPlan) -> dict:
        counts, sizes = plan.counts, plan.sizes
        n = int(counts.sum())
        # Kish's design effect from unequal weights: n·Σw²/(Σw)² over the sample.
        w = sizes[counts > 0] / counts[counts > 0]
        c = counts[counts > 0]
        deff = float(n * (c * w * w).sum() / (c * w).sum() ** 2) if n else float("nan")
        out = {"allocation": self.allocation, "strata": len(plan.labels),
               "empty_strata": int((counts == 0).sum()),
               "take_all_strata": int(((counts == sizes) & (sizes > 0)).sum()),
               "thin_strata": int(plan.thin.sum()), "weight_design_effect": deff}
        if plan.collapsed:
            out["collapsed"] = plan.collapsed
        return out


def _check_per_stratum(name: str, values, positive: bool) -> None:
    if values is None:
        return
    if not isinstance(values, dict) or not values:
        raise UsageError(f"{name} must be a dict {{stratum label: number}}, got {values!r}")
    for key, v in values.items():
        ok = isinstance(v, numbers.Real) and not isinstance(v, bool) and np.isfinite(v)
        if not ok or not (v > 0 if positive else v >= 0):
            kind = "positive" if positive else "non-negative"
            raise UsageError(f"{name}[{key!r}] must be a {kind} number, got {v!r}")


class Cells:
    """The current strata as groups of the original cells; merging a thin cell
    into another keeps sizes, moments, sd and cost consistent."""

    def __init__(self, codes: np.ndarray, labels: list[str], moments: np.ndarray | None,
                 sd: np.ndarray | None, cost: np.ndarray | None):
        self.codes0, self.labels0 = codes, labels
        self.sizes0 = np.bincount(codes, minlength=len(labels))
        self.moments0, self.sd0, self.cost0 = moments, sd, cost
        # Group id of each original cell: the smallest original index in the group.
        self.owner = np.arange(len(labels))
        self.groups = self.owner.copy()  # sorted ids of the current groups

    def _sum(self, values: np.ndarray) -> np.ndarray:
        return np.bincount(self.owner, weights=values, minlength=len(self.owner))[self.groups]

    @property
    def sizes(self) -> np.ndarray:
        return self._sum(self.sizes0.astype(np.float64)).astype(np.int64)

    @property
    def labels(self) -> list[str]:
        if len(self.groups) == len(self.owner):
            return list(self.labels0)
        members: dict[int, list[str]] = {}
        for cell, group in enumerate(self.owner.tolist()):
            members.setdefault(group, []).append(self.labels0[cell])
        return ["+".join(members[g]) for g in self.groups.tolist()]

    def sd(self) -> np.ndarray | None:
        """Per-group sd: from the data's moments (ddof=1; fewer than two values:
        the overall sd), or pooled from given sds as sqrt(ΣN_h·S_h²/ΣN_h)."""
        if self.moments0 is not None:
            cnt, s1, s2 = (self._sum(self.moments0[:, j]) for j in range(3))
            tot = self.moments0.sum(axis=0)
            overall = np.sqrt(max(tot[2] - tot[1] ** 2 / tot[0], 0.0) / max(tot[0] - 1, 1))
            with np.errstate(invalid="ignore", divide="ignore"):
                var = (s2 - s1 ** 2 / cnt) / (cnt - 1)
            return np.where(cnt >= 2, np.sqrt(np.maximum(var, 0.0)), overall)
        if self.sd0 is not None:
            sizes = self.sizes0.astype(np.float64)
            return np.sqrt(self._sum(sizes * self.sd0 ** 2) / np.maximum(self._sum(sizes), 1))
        return None

    def cost(self) -> np.ndarray | None:
        """Per-group cost per row: the size-weighted mean of the merged cells' costs."""
        if self.cost0 is None:
            return None
        sizes = self.sizes0.astype(np.float64)
        return self._sum(sizes * self.cost0) / np.maximum(self._sum(sizes), 1)

    def merge(self, a: int, b: int) -> None:
        """Merge group a into group b (group ids as in `groups`)."""
        new = min(a, b)
        self.owner[(self.owner == a) | (self.owner == b)] = new
        self.groups = np.unique(self.owner)

    def row_codes(self) -> np.ndarray:
        """The group (0..G-1) of every pool row."""
        if len(self.groups) == len(self.owner):
            return self.codes0
        compact = np.searchsorted(self.groups, self.owner)
        return compact[self.codes0]


def _collapse_thin(cells: Cells, ds: Dataset, fields: list[str], is_thin) -> list[dict]:
    """Merge thin cells, one at a time (the smallest first), into their nearest
    cell until none is thin or one cell is left. Nearest: the cell sharing the
    most leading field values with it (cells "a|x" and "a|y" share one), then
    the smallest such cell, then the first in label order."""
    values = _cell_field_codes(cells, ds, fields)
    merges = []
    while True:
        groups = cells.groups
        thin = is_thin(cells)
        if len(groups) <= 1 or not thin.any():
            return merges
        sizes = cells.sizes
        cand = np.flatnonzero(thin)
        t = cand[np.argmin(sizes[cand])]
        members = np.flatnonzero(cells.owner == groups[t])
        shared = np.zeros(len(cells.owner), dtype=np.int64)
        for m in members:
            shared = np.maximum(shared, np.cumprod(values == values[m], axis=1).sum(axis=1))
        score = np.zeros(len(cells.owner), dtype=np.int64)
        np.maximum.at(score, cells.owner, shared)
        score = score[groups]
        score[t] = -1
        best = np.lexsort((np.arange(len(groups)), sizes, -score))[0]
        labels = cells.labels
        merges.append({"cell": labels[t], "into": labels[best], "pool": int(sizes[t])})
        cells.merge(int(groups[t]), int(groups[best]))


def _cell_field_codes(cells: Cells, ds: Dataset, fields: list[str]) -> np.ndarray:
    """Per original cell, the code of its value in each field (cells x fields)."""
    if len(fields) == 1:
        return np.arange(len(cells.labels0))[:, None]
    order = grouped_order(cells.codes0, len(cells.labels0))
    first = order[np.concatenate(([0], np.cumsum(cells.sizes0)[:-1]))]
    return np.stack([strata(ds, [f]).codes[first] for f in fields], axis=1)
