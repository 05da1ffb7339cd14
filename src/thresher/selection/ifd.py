"""`ifd` and `superfilter`: instruction-following difficulty selection.

IFD = loss(response | prompt) / loss(response) from a small LM (Cherry LLM,
Li et al. 2023). IFD >= 1 means the prompt does not help predict the
response (often misaligned pairs), so those rows are dropped; among the
rest, higher IFD means a harder, more informative example. Superfiltering
(Li et al. 2024) scores IFD with a small model and keeps the top fraction;
here the top fraction is then thinned to the budget by facility location
on embeddings, so the kept rows are hard *and* cover the pool.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from thresher.core.budget import Budget
from thresher.errors import UsageError
from thresher.core.budget import budget_rows, is_token_budget
from thresher.selection.base import deterministic, take_ranked, token_counts


def _ifd_candidates(ifd: np.ndarray, max_ifd: float) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Rows with a finite IFD below `max_ifd`, ranked by IFD (highest first, ties by row)."""
    ifd = np.asarray(ifd, dtype=np.float64)
    finite = np.isfinite(ifd)
    ok = finite & (ifd < max_ifd)
    removed = {}
    if (~finite).any():
        removed["ifd undefined (empty response or prompt)"] = np.flatnonzero(~finite)
    if (finite & ~ok).any():
        removed[f"ifd >= {max_ifd:g}"] = np.flatnonzero(finite & ~ok)
    rows = np.flatnonzero(ok)
    order = rows[np.lexsort((rows, -ifd[rows]))]
    return order, removed


class IFDSelector:
    """Drop IFD >= max_ifd, then keep the highest-IFD rows up to the budget."""

    name = "ifd"
    needs_budget = False

    def __init__(self, max_ifd: float = 1.0):
        if not float(max_ifd) > 0:
            raise UsageError(f"ifd: max_ifd must be > 0, got {max_ifd}")
        self.max_ifd = float(max_ifd)

    @property
    def requires(self) -> list[str]:
        return ["ifd", "tokens"]

    def select(self, ds, budget: Budget | int | None = None, features: dict | None = None,
               seed: int | None = None):
        features = features or {}
        n = len(ds)
        order, removed = _ifd_candidates(features["ifd"], self.max_ifd)
        tokens = token_counts(ds, features) if is_token_budget(budget) else None
        kept = take_ranked(order, budget, n, tokens)
        if len(kept) < len(order):
            removed["below the budget's IFD cut"] = np.setdiff1d(order, kept)
        return deterministic(kept, method="ifd", params={"max_ifd": self.max_ifd}, seed=seed, pool_size=n,
                             diagnostics=_ifd_stats(features["ifd"], kept), removed=removed)


class SuperfilterSelector:
    """Top `top_fraction` of rows by IFD, then facility location on embeddings down to the budget."""

    name = "superfilter"
    needs_budget = True

    def __init__(self, top_fraction: float = 0.3, max_ifd: float = 1.0, random_state: int | None = None):
        if not 0 < float(top_fraction) <= 1:
            raise UsageError(f"superfilter: top_fraction must be in (0, 1], got {top_fraction}")
        self.top_fraction = float(top_fraction)
        self.max_ifd = float(max_ifd)
        self.random_state = random_state

    @property
    def requires(self) -> list[str]:
        return ["ifd", "embedding", "tokens"]

    def select(self, ds, budget: Budget | int, features: dict | None = None, seed: int | None = None):
        from thresher.selection.facility import facility_location

        features = features or {}
        n = len(ds)
        order, removed = _ifd_candidates(features["ifd"], self.max_ifd)
        top = order[: max(1, int(round(self.top_fraction * n)))]
        if len(top) < len(order):
            removed[f"outside the top {self.top_fraction:.0%} by IFD"] = order[len(top):]
        tokens = token_counts(ds, features) if is_token_budget(budget) else None
        k = budget_rows(budget, n, required=tokens is None, at_most_pool=True)
        if k is not None and k > len(top):
            raise UsageError(f"superfilter: budget {k} exceeds the {len(top)} rows in the top "
                             f"{self.top_fraction:.0%} by IFD; raise top_fraction")
        picks = _facility(facility_location, features["embedding"][top], k, tokens[top] if tokens is not None
                          else None, budget, self.random_state)
        kept = top[picks]
        removed["not chosen by facility location"] = np.setdiff1d(top, kept)
        params = {"top_fraction": self.top_fraction, "max_ifd": self.max_ifd}
        return deterministic(kept, method="superfilter", params=params, seed=seed, pool_size=n,
                             diagnostics=_ifd_stats(features["ifd"], kept), removed=removed)


def _facility(facility_location, X, k, costs, budget, random_state) -> np.ndarray:
    if costs is not None:
        result = facility_location(X, budget_cost=budget.value, costs=costs, random_state=random_state)
    else:
        result = facility_location(X, k=k, random_state=random_state)
    order = result[0] if isinstance(result, tuple) else result.order
    return np.asarray(order, dtype=np.int64)


def _ifd_stats(ifd: np.ndarray, kept: np.ndarray) -> dict[str, Any]:
    vals = np.asarray(ifd, dtype=np.float64)[kept]
    vals = vals[np.isfinite(vals)]
    if not len(vals):
        return {}
    return {"ifd_kept_mean": float(vals.mean()), "ifd_kept_min": float(vals.min()), "ifd_kept_max": float(vals.max())}
