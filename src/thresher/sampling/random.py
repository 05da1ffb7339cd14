"""Simple random sampling, without or with replacement."""
from __future__ import annotations

import numpy as np

from thresher.core.budget import Budget, budget_rows
from thresher.core.selection import Selection
from thresher.data.dataset import Dataset
from thresher.errors import UsageError
from thresher.sampling._common import Design, check_random_state, check_without_replacement


class RandomSampler(Design):
    """Simple random sample (SRS) of n rows.

    Without replacement every n-subset is equally likely: pi = n/N and
    weight = N/n. With replacement, n independent uniform draws: a row drawn
    k times appears k times in the output. Its probability of appearing at all
    is pi = 1 - (1 - 1/N)^n, but each *draw* carries weight N/n, not 1/pi:
    the Hansen-Hurwitz estimator of a total, (N/n)·Σ_draws y, counts a row
    once per draw and is unbiased, whereas 1/pi per draw would over-count
    rows drawn several times.

    Parameters
    ----------
    replace: draw with replacement.
    random_state: seed (int), numpy Generator, or None for fresh entropy.
    """

    method = "random"

    def __init__(self, replace: bool = False, random_state: int | np.random.Generator | None = None):
        self.replace = replace
        self.random_state = random_state
        if not isinstance(replace, (bool, np.bool_)):
            raise UsageError(f"replace must be True or False, got {replace!r}")
        check_random_state(random_state)

    def _n(self, ds: Dataset, budget: int | Budget) -> tuple[int, int]:
        big_n = len(ds)
        n = budget_rows(budget, big_n)
        if self.replace:
            if n > 0 and big_n == 0:
                raise UsageError(f"cannot draw {n} rows from an empty pool")
        else:
            check_without_replacement(n, big_n, "lower the budget or draw with replace=True (--replace)")
        return n, big_n

    def inclusion_probabilities(self, ds: Dataset, budget: int | Budget) -> np.ndarray:
        """Probability that each pool row appears in the sample (at least once)."""
        n, big_n = self._n(ds, budget)
        return np.full(big_n, _pi(n, big_n, bool(self.replace)))

    def select(self, ds: Dataset, budget: int | Budget) -> Selection:
        """Draw the sample; indices in pool order (repeats kept when drawing with replacement)."""
        n, big_n = self._n(ds, budget)
        rng = self._rng()
        if self.replace:
            indices = np.sort(rng.integers(0, big_n, size=n)) if n else np.empty(0, dtype=np.int64)
            weight = big_n / n if n else np.nan
        else:
            indices = np.sort(rng.choice(big_n, size=n, replace=False, shuffle=False))
            weight = big_n / n if n else np.nan
        pi = _pi(n, big_n, bool(self.replace))
        distinct = int(np.count_nonzero(np.diff(indices))) + 1 if n else 0  # indices are sorted
        return Selection(
            indices=indices, pi=np.full(n, pi), weights=np.full(n, weight), method=self.method,
            params=self.get_params(), seed=self._seed(), pool_size=big_n,
            diagnostics={"draws": n, "distinct_rows": int(distinct), "sampling_fraction": n / big_n if big_n else 0.0},
        )


def _pi(n: int, big_n: int, replace: bool) -> float:
    if big_n == 0:
        return 0.0
    if replace:
        # 1-(1-1/N)^n computed stably for large N.
        return float(-np.expm1(n * np.log1p(-1.0 / big_n))) if big_n > 1 else float(n > 0)
    return n / big_n
