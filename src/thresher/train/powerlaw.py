"""Saturating power law `err(n) = a * n**(-b) + c` for learning curves: fit,
predict, and bootstrap intervals. numpy/scipy only."""
from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import numpy as np

from thresher.core.rng import make_rng
from thresher.errors import UsageError

B_BOUNDS = (1e-3, 4.0)


@dataclass
class PowerLawFit:
    """Fitted `err(n) = a * n**(-b) + c`; `cov` is the covariance of (a, b, c)
    (NaN where the points cannot estimate it, e.g. three points)."""

    a: float
    b: float
    c: float
    cov: np.ndarray
    n_points: int
    rss: float
    boot: np.ndarray | None = field(default=None, repr=False)  # (n_boot, 3) bootstrap (a, b, c)

    @property
    def params(self) -> np.ndarray:
        return np.array([self.a, self.b, self.c])

    def predict(self, n) -> np.ndarray:
        """Predicted error at training-set size(s) `n`."""
        return _curve(np.asarray(n, dtype=np.float64), self.a, self.b, self.c)

    def predict_interval(self, n, level: float = 0.95) -> tuple[np.ndarray, np.ndarray]:
        """Percentile bootstrap interval of the prediction at `n` (needs `bootstrap`)."""
        if self.boot is None or not len(self.boot):
            raise UsageError("no bootstrap fits: call bootstrap_fit first")
        n = np.atleast_1d(np.asarray(n, dtype=np.float64))
        preds = _curve(n[None, :], self.boot[:, :1], self.boot[:, 1:2], self.boot[:, 2:3])
        tail = (1 - level) / 2 * 100
        return np.percentile(preds, tail, axis=0), np.percentile(preds, 100 - tail, axis=0)

    def param_intervals(self, level: float = 0.95) -> dict[str, tuple[float, float]]:
        """Percentile bootstrap interval of a, b and c (NaN without bootstrap)."""
        if self.boot is None or not len(self.boot):
            return {k: (float("nan"), float("nan")) for k in "abc"}
        tail = (1 - level) / 2 * 100
        low, high = np.percentile(self.boot, [tail, 100 - tail], axis=0)
        return {k: (float(lo), float(hi)) for k, lo, hi in zip("abc", low, high)}


def _curve(n, a, b, c):
    return a * np.power(n, -b) + c


def fit_power_law(n, err) -> PowerLawFit:
    """Least-squares fit of `err(n) = a * n**(-b) + c` with a, c >= 0 and
    0 < b <= 4. Needs at least three distinct sizes; repeated sizes (seeds)
    are fine. Starting values come from a profile search over b (for a fixed
    b the model is linear in a and c), so few or noisy points still converge.
    """
    x, y = _check_points(n, err)
    scale = float(x.min())
    xs = x / scale  # fit a' with a = a' * scale**b: keeps n**(-b) near 1
    b0, a0, c0 = _profile_start(xs, y)
    params, cov = _refine(xs, y, a0, b0, c0)
    a_s, b, c = params
    a = a_s * scale ** b
    # delta method for a = a' * scale**b
    jac = np.array([[scale ** b, a_s * scale ** b * np.log(scale), 0.0], [0, 1, 0], [0, 0, 1]])
    cov = jac @ cov @ jac.T if np.all(np.isfinite(cov)) else np.full((3, 3), np.nan)
    rss = float(np.sum((y - _curve(x, a, b, c)) ** 2))
    return PowerLawFit(float(a), float(b), float(c), cov, len(x), rss)


def bootstrap_fit(n, err, n_boot: int = 500, seed: int | None = 0, level: float = 0.95) -> PowerLawFit:
    """`fit_power_law` plus `n_boot` bootstrap refits stored on the result.

    When every size has two or more values (several seeds), values are
    resampled within each size, which keeps the design and lets the noise
    differ between sizes (deviations widened by sqrt(k / (k - 1)) for k values
    per size). Otherwise residuals of the fit are resampled
    (inflated by sqrt(N / (N - 3)) for the fitted parameters).
    """
    if not isinstance(n_boot, int) or n_boot < 1:
        raise UsageError(f"n_boot must be a positive integer, got {n_boot!r}")
    x, y = _check_points(n, err)
    base = fit_power_law(x, y)
    rng = make_rng(seed)
    sizes, inverse, counts = np.unique(x, return_inverse=True, return_counts=True)
    draws = np.empty((n_boot, len(y)))
    if counts.min() >= 2:
        order = np.argsort(inverse, kind="stable")
        starts = np.r_[0, np.cumsum(counts)[:-1]]
        per_point = counts[inverse[order]]
        picks = starts[inverse[order]] + np.floor(rng.random((n_boot, len(y))) * per_point).astype(np.int64)
        draws[:, order] = y[order][picks]
        # widen deviations from each size's mean by sqrt(k / (k - 1)): resampling
        # k values understates their variance by (k - 1) / k
        means = (np.bincount(inverse, weights=y) / counts)[inverse]
        draws = means + (draws - means) * np.sqrt(counts / (counts - 1))[inverse]
    else:
        fitted = base.predict(x)
        resid = y - fitted
        resid = (resid - resid.mean()) * np.sqrt(len(y) / max(len(y) - 3, 1))
        draws = fitted[None, :] + resid[rng.integers(0, len(y), size=(n_boot, len(y)))]
    scale = float(x.min())
    boot = _profile_fits(x / scale, draws)
    boot[:, 0] *= scale ** boot[:, 1]
    base.boot = boot
    return base


def _check_points(n, err) -> tuple[np.ndarray, np.ndarray]:
    x = np.asarray(n, dtype=np.float64).reshape(-1)
    y = np.asarray(err, dtype=np.float64).reshape(-1)
    if x.shape != y.shape:
        raise UsageError(f"power-law fit: {len(x)} sizes but {len(y)} values")
    keep = np.isfinite(x) & np.isfinite(y)
    x, y = x[keep], y[keep]
    if np.any(x <= 0):
        raise UsageError("power-law fit: sizes must be positive")
    if len(np.unique(x)) < 3:
        raise UsageError(f"power-law fit needs at least 3 distinct sizes, got {len(np.unique(x))}; "
                         "use more fractions")
    return x, y


_GRID = np.geomspace(B_BOUNDS[0], B_BOUNDS[1], 400)


def _profile_fits(xs: np.ndarray, ys: np.ndarray) -> np.ndarray:
    """Best (a, b, c) with a, c >= 0 for each row of `ys` (m, N), b on a fine
    log grid: for a fixed b the model is linear in (a, c), so every grid
    point has a closed-form answer. Vectorized over rows and grid."""
    ys = np.atleast_2d(ys)
    basis = np.power(xs[None, :], -_GRID[:, None])  # (G, N)
    xbar = basis.mean(axis=1)
    centered = basis - xbar[:, None]
    sxx = np.maximum(np.sum(centered ** 2, axis=1), 1e-300)
    ybar = ys.mean(axis=1, keepdims=True)  # (m, 1)
    syy = np.sum((ys - ybar) ** 2, axis=1, keepdims=True)
    sxy = (ys - ybar) @ centered.T  # (m, G)
    a = sxy / sxx
    c = ybar - a * xbar
    rss = syy - sxy * a
    # c < 0: refit through the origin; a < 0: a flat line at the mean
    xx = np.sum(basis ** 2, axis=1)
    a0 = np.maximum((ys @ basis.T) / xx, 0.0)
    rss0 = np.sum(ys ** 2, axis=1, keepdims=True) - 2 * a0 * (ys @ basis.T) + a0 ** 2 * xx
    neg_c = c < 0
    a, c, rss = np.where(neg_c, a0, a), np.where(neg_c, 0.0, c), np.where(neg_c, rss0, rss)
    neg_a = a < 0
    a, c, rss = np.where(neg_a, 0.0, a), np.where(neg_a, ybar, c), np.where(neg_a, syy, rss)
    best = np.argmin(rss, axis=1)
    rows = np.arange(len(ys))
    return np.column_stack([a[rows, best], _GRID[best], c[rows, best]])


def _profile_start(xs: np.ndarray, y: np.ndarray) -> tuple[float, float, float]:
    a, b, c = _profile_fits(xs, y)[0]
    return float(b), float(a), float(c)


def _refine(xs: np.ndarray, y: np.ndarray, a0: float, b0: float, c0: float) -> tuple[np.ndarray, np.ndarray]:
    """curve_fit from the profile start, within bounds; falls back to the start."""
    from scipy.optimize import curve_fit

    top = max(float(np.max(np.abs(y))) * 10, 1e-12)
    start = np.clip([a0, b0, c0], [0, B_BOUNDS[0], 0], [np.inf, B_BOUNDS[1], top])
    start = start + np.array([1e-12, 0, 1e-12])  # strictly inside the bounds
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            params, cov = curve_fit(_curve, xs, y, p0=start, bounds=([0, B_BOUNDS[0], 0], [np.inf, B_BOUNDS[1], top]),
                                    maxfev=5000)
    except (RuntimeError, ValueError):
        return start, np.full((3, 3), np.nan)
    start_rss = np.sum((_curve(xs, *start) - y) ** 2)
    if np.sum((_curve(xs, *params) - y) ** 2) > start_rss:
        params = start
    if len(xs) <= 3 or not np.all(np.isfinite(cov)):
        cov = np.full((3, 3), np.nan)
    return np.asarray(params, dtype=np.float64), cov
