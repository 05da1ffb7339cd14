"""`length`: the longest (or shortest) rows, under a row or token budget.

"Long is more for alignment" (Zhao et al. 2024): the longest responses are a
strong, cheap baseline that large-scale comparisons found hard to beat. Rows
are ranked by `by` (default `response_tokens`), ties in pool order; a token
budget takes rows in that order while they fit (``fill="prefix"`` stops at
the first row that does not; ``fill="skip"`` skips it and tries the next,
so the budget is used to the last token).

Length-ranked selection empties short-answer tasks (math answers, labels):
run it inside a `mixture` over the task field, or let the coverage guard
enforce a floor (`--min-per-category`).
"""
from __future__ import annotations

from typing import Any

import numpy as np

from thresher.core.budget import Budget
from thresher.core.selection import Selection
from thresher.data.dataset import Dataset
from thresher.errors import UsageError
from thresher.sampling._common import Design, check_choice, check_field_name, check_random_state
from thresher.selection.base import budget_limits, deterministic, feature_vector

ORDERS = ("longest", "shortest")
FILLS = ("prefix", "skip")


class LengthSelector(Design):
    """Rank by a length column and take rows to the budget.

    Parameters
    ----------
    by: the length column (a feature such as response_tokens, tokens,
        response_words, chars, or a numeric field).
    order: "longest" (default) or "shortest" first.
    fill: token budgets only: "prefix" stops at the first row that does not
        fit, "skip" passes over it and keeps filling.
    """

    name = "length"
    method = "length"
    needs_budget = True

    def __init__(self, by: str = "response_tokens", order: str = "longest", fill: str = "prefix",
                 random_state: int | np.random.Generator | None = None):
        self.by = by
        self.order = order
        self.fill = fill
        self.random_state = random_state
        check_field_name("by", by)
        check_choice("order", order, ORDERS)
        check_choice("fill", fill, FILLS)
        check_random_state(random_state)

    @property
    def requires(self) -> list[str]:
        return [self.by, "tokens"]

    def select(self, ds: Dataset, budget: int | Budget, features: dict[str, np.ndarray] | None = None) -> Selection:
        """Rows in rank order (longest first unless order="shortest")."""
        length = feature_vector(ds, features, self.by)
        max_rows, tokens, max_tokens = budget_limits(budget, ds, features)
        key = -length if self.order == "longest" else length
        ranked = top_rows(key, max_rows) if max_tokens is None and max_rows is not None else \
            np.argsort(key, kind="stable")
        picks = self._take(ranked, max_rows, tokens, max_tokens)
        diagnostics: dict[str, Any] = {"by": self.by, "order": self.order,
                                       "cut": float(length[picks[-1]]) if len(picks) else None,
                                       "mean_selected": float(length[picks].mean()) if len(picks) else None,
                                       "mean_pool": float(length.mean()) if len(length) else None}
        if max_tokens is not None:
            diagnostics["tokens_used"] = float(tokens[picks].sum())
        mask = np.ones(len(ds), dtype=bool)
        mask[picks] = False
        rest = np.flatnonzero(mask)
        word = "shorter" if self.order == "longest" else "longer"
        removed = {f"{word} than the budget's cut ({self.by})": rest} if len(rest) else {}
        return deterministic(picks, method=self.method, params=self.get_params(), seed=self._seed(),
                             pool_size=len(ds), diagnostics=diagnostics, removed=removed)

    def _take(self, ranked: np.ndarray, max_rows: int | None, tokens: np.ndarray | None,
              max_tokens: float | None) -> np.ndarray:
        if max_tokens is None:
            return ranked if max_rows is None else ranked[:max_rows]
        cost = tokens[ranked]
        if (cost < 0).any():
            raise UsageError("token counts must be non-negative")
        if self.fill == "prefix":
            return ranked[: int(np.searchsorted(np.cumsum(cost), max_tokens, side="right"))]
        return ranked[_greedy_fill(cost, float(max_tokens))]


def top_rows(key: np.ndarray, k: int) -> np.ndarray:
    """The k rows of smallest `key`, ordered by key then row (= a stable argsort's first k),
    via a partition: O(N + k log k)."""
    n = len(key)
    if k >= n:
        return np.argsort(key, kind="stable")
    if k <= 0:
        return np.empty(0, dtype=np.int64)
    cut = np.partition(key, k - 1)[k - 1]
    below = np.flatnonzero(key < cut)
    at = np.flatnonzero(key == cut)[: k - len(below)]  # ties at the cut: earliest rows
    rows = np.concatenate([below, at])
    return rows[np.lexsort((rows, key[rows]))]


def _greedy_fill(cost: np.ndarray, limit: float) -> np.ndarray:
    """Positions kept by the walk "take the row if it still fits", in order.

    Vectorized in rounds: the longest run that fits is taken whole with one
    cumsum, then the walk jumps to the next row small enough for what is
    left. Every round keeps at least one row."""
    kept, start, left = [], 0, limit
    while start < len(cost):
        fits = np.flatnonzero(cost[start:] <= left)
        if not len(fits):
            break
        start += int(fits[0])
        sums = np.cumsum(cost[start:])
        stop = start + int(np.searchsorted(sums, left, side="right"))
        kept.append(np.arange(start, stop))
        left -= float(sums[stop - start - 1])
        start = stop + 1  # cost[stop] does not fit: skip it
    return np.concatenate(kept) if kept else np.empty(0, dtype=np.int64)
