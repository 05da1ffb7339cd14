"""Nonparametric bootstrap: percentile confidence intervals for any statistic."""
from __future__ import annotations

import inspect
import numbers
from dataclasses import asdict, dataclass
from typing import Callable

import numpy as np

from thresher.core.rng import make_rng
from thresher.errors import UsageError
from thresher.sampling._common import check_random_state

# Resample matrices are drawn in chunks of about this many cells (~32 MB of float64).
CHUNK_CELLS = 4_000_000

_BUILTIN: dict[str, Callable[..., np.ndarray]] = {
    "mean": np.mean,
    "median": np.median,
    "std": lambda x, axis: np.std(x, axis=axis, ddof=1),
    "sum": np.sum,
}


@dataclass(frozen=True)
class BootstrapResult:
    """estimate: the statistic on the data; [low, high]: percentile interval at
    `confidence`; std_error: the sd of the bootstrap replicates."""

    estimate: float
    low: float
    high: float
    std_error: float
    n_resamples: int
    confidence: float
    statistic: str

    def to_json(self) -> dict:
        return asdict(self)


def bootstrap_ci(values, statistic: str | Callable = "mean", n_resamples: int = 1000, confidence: float = 0.95,
                 random_state: int | np.random.Generator | None = None) -> BootstrapResult:
    """Percentile bootstrap interval of `statistic` over `values` (1-D numbers).

    `statistic` is "mean", "median", "std" (ddof=1), "sum", or a callable. A
    callable that accepts an `axis` keyword (like numpy reductions) gets a
    (resamples, n) matrix and `axis=1`, and must return one value per row;
    any other callable is called once per resample on a 1-D array.
    """
    x = _values(values)
    name, fn, vectorized = _statistic(statistic)
    _check(n_resamples, confidence)
    check_random_state(random_state)
    rng = make_rng(random_state)
    estimate = float(fn(x, axis=0)) if vectorized else float(fn(x))
    reps = _replicates(x, fn, vectorized, int(n_resamples), rng)
    alpha = 1.0 - confidence
    low, high = np.quantile(reps, [alpha / 2, 1 - alpha / 2])
    se = float(np.std(reps, ddof=1)) if len(reps) > 1 else 0.0
    return BootstrapResult(estimate, float(low), float(high), se, int(n_resamples), float(confidence), name)


def _replicates(x: np.ndarray, fn: Callable, vectorized: bool, n_resamples: int,
                rng: np.random.Generator) -> np.ndarray:
    n = len(x)
    out = np.empty(n_resamples)
    chunk = max(1, CHUNK_CELLS // n)
    for start in range(0, n_resamples, chunk):
        b = min(chunk, n_resamples - start)
        sample = x[rng.integers(0, n, size=(b, n))]
        if vectorized:
            out[start:start + b] = np.asarray(fn(sample, axis=1), dtype=np.float64).reshape(b)
        else:
            out[start:start + b] = [float(fn(row)) for row in sample]
    return out


def _values(values) -> np.ndarray:
    try:
        x = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError):
        raise UsageError("bootstrap values must be numbers") from None
    if x.ndim != 1 or len(x) == 0:
        raise UsageError(f"bootstrap needs a non-empty 1-D array of numbers, got shape {x.shape}")
    bad = np.flatnonzero(~np.isfinite(x))
    if len(bad):
        raise UsageError(f"bootstrap values contain {len(bad)} missing or infinite values "
                         f"(first at position {int(bad[0])}); drop them first")
    return x


def _statistic(statistic) -> tuple[str, Callable, bool]:
    if isinstance(statistic, str):
        if statistic not in _BUILTIN:
            raise UsageError(f"statistic must be one of {', '.join(map(repr, _BUILTIN))} or a callable; "
                             f"got {statistic!r}")
        return statistic, _BUILTIN[statistic], True
    if not callable(statistic):
        raise UsageError(f"statistic must be a name or a callable, got {statistic!r}")
    try:
        vectorized = "axis" in inspect.signature(statistic).parameters
    except (TypeError, ValueError):
        vectorized = False
    return getattr(statistic, "__name__", "custom"), statistic, vectorized


def _check(n_resamples, confidence) -> None:
    if isinstance(n_resamples, bool) or not isinstance(n_resamples, numbers.Integral) or n_resamples < 2:
        raise UsageError(f"n_resamples must be an integer >= 2, got {n_resamples!r}")
    if not isinstance(confidence, numbers.Real) or not 0 < confidence < 1:
        raise UsageError(f"confidence must be between 0 and 1 (e.g. 0.95), got {confidence!r}")
