"""Probability-proportional-to-size (importance) sampling: fixed size or Poisson."""
from __future__ import annotations

import numpy as np

from thresher.core.budget import Budget, budget_rows
from thresher.core.selection import Selection
from thresher.data.dataset import Dataset
from thresher.errors import UsageError
from thresher.sampling._common import (Design, check_field_name, check_number, check_random_state,
                                       check_without_replacement, numeric_column)
from thresher.sampling.allocation import water_fill

CERTAIN = 1.0 - 1e-12


class PPSSampler(Design):
    """Sample rows with probability proportional to a size (score) column.

    Shares: p_i ∝ size_i^(1/temperature) (temperature > 1 flattens, < 1
    sharpens); then, with N rows, every share is kept within
    [floor/N, cap/N] — floor and cap are multiples of the uniform share 1/N
    (floor in [0, 1], cap >= 1) — by fixing the shares that cross a bound and
    rescaling the rest so that Σp = 1.

    Inclusion probabilities: pi_i = n·p_i; any pi_i >= 1 is set to 1 (a
    certainty row) and the rest rescaled, repeatedly, until Σpi = n and none
    exceeds 1. These pi are exact for both designs:

    - fixed size (default): randomized systematic PPS (Goodman & Kish 1950;
      Hartley & Rao 1962): rows in a random order, cumulate pi, take the rows
      hit by u, u+1, ..., u+n-1 with u ~ U[0, 1). Exactly n rows.
    - poisson=True: an independent Bernoulli(pi_i) draw per row; the sample
      size is random with expectation n.

    Weights are 1/pi.
    """

    method = "pps"

    def __init__(self, size_by: str, temperature: float = 1.0, floor: float = 0.0, cap: float | None = None,
                 poisson: bool = False, random_state: int | np.random.Generator | None = None):
        self.size_by = size_by
        self.temperature = temperature
        self.floor = floor
        self.cap = cap
        self.poisson = poisson
        self.random_state = random_state
        check_field_name("size_by", size_by)
        check_number("temperature", temperature, low=0, low_open=True)
        check_number("floor", floor, low=0, high=1)
        check_number("cap", cap, low=1, allow_none=True)
        if not isinstance(poisson, (bool, np.bool_)):
            raise UsageError(f"poisson must be True or False, got {poisson!r}")
        check_random_state(random_state)

    def shares(self, ds: Dataset) -> np.ndarray:
        """Selection shares p (Σp = 1) after temperature, floor and cap."""
        sizes = numeric_column(ds, self.size_by, "size_by")
        bad = np.flatnonzero(sizes < 0)
        if len(bad):
            raise UsageError(f"{ds.source.path}: field '{self.size_by}' (size_by) must be >= 0; "
                             f"row {int(bad[0]) + 1} has {sizes[bad[0]]:g}")
        return selection_shares(sizes, self.temperature, self.floor, self.cap)

    def inclusion_probabilities(self, ds: Dataset, budget: int | Budget) -> np.ndarray:
        """pi of every pool row (certainty rows have pi = 1)."""
        n = budget_rows(budget, len(ds))
        check_without_replacement(n, len(ds))
        if n == 0:
            return np.zeros(len(ds))
        return inclusion_from_shares(self.shares(ds), n, self.size_by)

    def select(self, ds: Dataset, budget: int | Budget) -> Selection:
        """Draw the sample; indices in pool order."""
        n = budget_rows(budget, len(ds))
        pi_all = self.inclusion_probabilities(ds, budget)
        rng = self._rng()
        if n == 0:
            indices = np.empty(0, dtype=np.int64)
        elif self.poisson:
            indices = np.flatnonzero(rng.random(len(pi_all)) < pi_all)
        else:
            indices = systematic_pps(pi_all, n, rng)
        pi = pi_all[indices]
        return Selection(indices=indices, pi=pi, weights=1.0 / pi, method=self.method,
                         params=self.get_params(), seed=self._seed(), pool_size=len(ds),
                         diagnostics=_diagnostics(pi_all, pi, self.poisson))


def selection_shares(sizes: np.ndarray, temperature: float = 1.0, floor: float = 0.0,
                     cap: float | None = None) -> np.ndarray:
    """p_i ∝ size_i^(1/temperature), bounded to [floor/N, cap/N], Σp = 1."""
    sizes = np.asarray(sizes, dtype=np.float64)
    big_n = len(sizes)
    positive = sizes > 0
    w = np.zeros(big_n)
    if positive.any():
        # In logs, relative to the largest size, so large exponents cannot overflow.
        logs = np.log(sizes[positive])
        w[positive] = np.exp((logs - logs.max()) / temperature)
    if floor == 0 and cap is None:
        if not positive.any():
            raise UsageError("every size is zero; give some rows a positive size or set floor > 0")
        return w / w.sum()
    return water_fill(w, 1.0, floor / big_n, 1.0 if cap is None else min(1.0, cap / big_n))


def inclusion_from_shares(p: np.ndarray, n: int, what: str = "size") -> np.ndarray:
    """pi = min(1, λ·p) with Σpi = n (certainty rows fixed at 1, the rest rescaled)."""
    usable = int((p > 0).sum())
    if usable < n:
        raise UsageError(f"only {usable} rows have a positive {what} share; cannot draw {n} rows with PPS. "
                         f"Lower the budget or set floor > 0")
    return water_fill(p, float(n), 0.0, 1.0)


def systematic_pps(pi: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """Randomized systematic PPS: exactly n distinct rows, first-order
    inclusion probabilities exactly `pi` (Σpi = n)."""
    perm = rng.permutation(len(pi))
    cum = np.cumsum(pi[perm])
    cum *= n / cum[-1]  # remove rounding drift so the last point always lands
    points = rng.random() + np.arange(n)
    hit = np.minimum(np.searchsorted(cum, points, side="right"), len(pi) - 1)
    rows = np.sort(perm[hit])
    # Hits are distinct since every pi <= 1; guard against float ties anyway.
    return rows[np.concatenate(([True], np.diff(rows) > 0))] if len(rows) else rows


def _diagnostics(pi_all: np.ndarray, pi: np.ndarray, poisson: bool) -> dict:
    w = 1.0 / pi
    n = len(pi)
    return {
        "design": "poisson" if poisson else "randomized systematic",
        "sum_pi": float(pi_all.sum()),
        "expected_n": float(pi_all.sum()),
        "certainty_units": int((pi_all >= CERTAIN).sum()),
        "zero_probability_rows": int((pi_all == 0).sum()),
        "min_pi": float(pi_all[pi_all > 0].min()) if (pi_all > 0).any() else 0.0,
        "max_weight": float(w.max()) if n else None,
        "weight_design_effect": float(n * (w * w).sum() / w.sum() ** 2) if n else None,
    }
