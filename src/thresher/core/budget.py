"""Budgets in rows, fraction of the pool, or tokens: one parser for all."""
from __future__ import annotations

import math
import numbers
from dataclasses import dataclass

import numpy as np

from thresher.errors import UsageError


@dataclass(frozen=True)
class Budget:
    kind: str  # "rows" | "fraction" | "tokens"
    value: float

    @classmethod
    def parse(cls, n: int | None = None, fraction: float | None = None, tokens: int | None = None) -> "Budget":
        given = [(k, v) for k, v in (("rows", n), ("fraction", fraction), ("tokens", tokens)) if v is not None]
        if len(given) != 1:
            raise UsageError("give exactly one budget: --n, --fraction or --tokens")
        kind, value = given[0]
        if kind == "fraction" and not (0 < value <= 1):
            raise UsageError(f"--fraction must be in (0, 1], got {value}")
        if kind in ("rows", "tokens") and (value < 0 or int(value) != value):
            raise UsageError(f"--{'n' if kind == 'rows' else kind} must be a non-negative integer, got {value}")
        return cls(kind, float(value))

    def rows(self, pool_size: int) -> int:
        """The number of rows this budget means for a pool of `pool_size` rows."""
        if self.kind == "rows":
            return int(self.value)
        if self.kind == "fraction":
            return int(math.floor(self.value * pool_size + 0.5))
        raise UsageError("a token budget needs token counts; use a selector that supports --tokens")

    def fits_tokens(self, token_counts: np.ndarray) -> int:
        """How many leading rows of `token_counts` fit in a token budget."""
        if self.kind != "tokens":
            raise UsageError("not a token budget")
        return int(np.searchsorted(np.cumsum(token_counts), self.value, side="right"))

    def to_json(self) -> dict:
        return {"kind": self.kind, "value": int(self.value) if self.kind != "fraction" else self.value}


def is_token_budget(budget: object) -> bool:
    """Whether `budget` is a `Budget` of tokens (it has no row count)."""
    return isinstance(budget, Budget) and budget.kind == "tokens"


def budget_rows(budget: "Budget | int | None", pool_size: int, *, required: bool = True,
                at_most_pool: bool = False) -> int | None:
    """The number of rows a budget asks for: a row count (an int) or a `Budget`.

    No budget (None) is an error when `required`, else None ("no row limit");
    so is a token budget, which has no row count (the caller limits by tokens).
    `at_most_pool` caps a `Budget`'s rows at `pool_size`.
    """
    if budget is None:
        if required:
            raise UsageError("this selector needs a budget: --n, --fraction or --tokens")
        return None
    if isinstance(budget, Budget):
        if budget.kind == "tokens" and not required:
            return None
        rows = budget.rows(pool_size)
        return min(rows, pool_size) if at_most_pool else rows
    if isinstance(budget, bool) or not isinstance(budget, numbers.Integral) or budget < 0:
        raise UsageError(f"the budget must be a non-negative number of rows or a Budget, got {budget!r}")
    return int(budget)
