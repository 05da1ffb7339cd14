"""Systematic sampling (fractional interval, random start, optional variable
intervals) with a periodicity check of the ordered rows."""
from __future__ import annotations

import logging

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from thresher.core.budget import Budget, budget_rows
from thresher.core.selection import Selection
from thresher.data.dataset import Dataset
from thresher.errors import UsageError
from thresher.sampling._common import (Design, check_field_name, check_random_state,
                                       check_without_replacement)
from thresher.sampling.strata import strata

log = logging.getLogger(__name__)

ACF_THRESHOLD = 0.3  # a period's autocorrelation must reach this ...
ACF_DIP = 0.2  # ... and rise this much above the lowest autocorrelation before it
MATERIAL_LOCK = 0.5  # warn when the phase-lock error's sd reaches this share of the SRS standard error
LOCK_STARTS = 64  # random starts over which the phase-lock error is measured
LOCK_ROWS = 100_000  # rows per start used to measure it (more change nothing but the time)
TOP_CATEGORIES = 8  # categorical check fields: indicators of the most frequent values


class SystematicSampler(Design):
    """Systematic sample of n rows from the pool ordered by `sort_by` (or as given).

    Plain: interval k = N/n (fractional), a random start u ~ U[0, k), and
    rows floor(u + j·k), j = 0..n-1, of the ordered pool; every row has
    pi = n/N exactly. (Computed in integers: start r ~ U{0..N-1}, rows
    (r + j·N) // n, which has the same distribution.)

    variable_intervals: one row drawn independently inside each interval
    [j·k, (j+1)·k), so gaps between picks vary and a periodic order cannot
    lock onto one phase. A row straddling two intervals is kept from being
    drawn twice with Deville's correction (Deville 1998; Tillé 2006, §7.2):
    if the previous interval took it, the next interval draws among its other
    rows; if not, it takes it with probability a/(k-b) (a, b: the row's parts
    in the two intervals). Fixed size n, pi = n/N exactly.

    check_field: the ordered values of this field (numeric, or the indicators
    of its most frequent categories) are checked for a period p (FFT
    autocorrelation up to about 3k lags). If the sample visits only some of
    the p phases (k near a multiple or a fraction of p) and locking onto them
    matters (the sd, over random starts, of the sample mean of the phase
    means reaches MATERIAL_LOCK times the SRS standard error that the
    estimates report), diagnostics carry a warning. Variable intervals
    cannot lock, so they are never warned about.
    """

    method = "systematic"

    def __init__(self, sort_by: str | None = None, variable_intervals: bool = False,
                 check_field: str | None = None, random_state: int | np.random.Generator | None = None):
        self.sort_by = sort_by
        self.variable_intervals = variable_intervals
        self.check_field = check_field
        self.random_state = random_state
        check_field_name("sort_by", sort_by, allow_none=True)
        if not isinstance(variable_intervals, (bool, np.bool_)):
            raise UsageError(f"variable_intervals must be True or False, got {variable_intervals!r}")
        check_field_name("check_field", check_field, allow_none=True)
        check_random_state(random_state)

    def _n(self, ds: Dataset, budget: int | Budget) -> int:
        n = budget_rows(budget, len(ds))
        check_without_replacement(n, len(ds))
        return n

    def inclusion_probabilities(self, ds: Dataset, budget: int | Budget) -> np.ndarray:
        """pi = n/N for every row."""
        n = self._n(ds, budget)
        return np.full(len(ds), n / len(ds) if len(ds) else 0.0)

    def order(self, ds: Dataset) -> np.ndarray:
        """Pool positions in sampling order (stable sort by `sort_by`, nulls last)."""
        if self.sort_by is None:
            return np.arange(len(ds), dtype=np.int64)
        col = ds.column(self.sort_by)
        if pa.types.is_nested(col.type):
            raise UsageError(f"{ds.source.path}: sort_by field '{self.sort_by}' is {col.type}; it must be a scalar")
        return pc.sort_indices(pa.table({"k": col}), sort_keys=[("k", "ascending")]).to_numpy().astype(np.int64)

    def select(self, ds: Dataset, budget: int | Budget) -> Selection:
        """Draw the sample; indices in pool order."""
        n = self._n(ds, budget)
        big_n = len(ds)
        rng = self._rng()
        if n == 0:
            positions = np.empty(0, dtype=np.int64)
        elif self.variable_intervals:
            positions = deville_positions(big_n, n, rng)
        else:
            positions = (int(rng.integers(0, big_n)) + np.arange(n, dtype=np.int64) * big_n) // n
        order = self.order(ds)
        indices = np.sort(order[positions])
        diagnostics = {"interval": big_n / n if n else None, "variable_intervals": bool(self.variable_intervals)}
        if self.check_field is not None and n:
            diagnostics["periodicity"] = periodicity(_ordered_values(ds, self.check_field, order), big_n / n,
                                                     positions, locked=not self.variable_intervals)
        pi = n / big_n if big_n else 0.0
        return Selection(indices=indices, pi=np.full(n, pi), weights=np.full(n, 1.0 / pi if pi else np.nan),
                         method=self.method, params=self.get_params(), seed=self._seed(), pool_size=big_n,
                         diagnostics=diagnostics)


def deville_positions(big_n: int, n: int, rng: np.random.Generator) -> np.ndarray:
    """One position per interval [i·N/n, (i+1)·N/n) with Deville's correction.

    Integer units: position p covers [p·n, (p+1)·n), interval i covers
    [i·N, (i+1)·N). L_i is the position that straddles the start of interval
    i (a: its part inside interval i, b = n - a: its part in interval i-1).
    """
    i = np.arange(n, dtype=np.int64)
    start = i * big_n
    first = start // n
    straddle = (start % n) != 0
    a = np.where(straddle, (first + 1) * n - start, 0)
    b = np.where(straddle, n - a, 0)
    other = (start + a + rng.integers(0, big_n - a)) // n
    take_first = straddle & (rng.random(n) * (big_n - b) < a)
    # State s_i: interval i-1 took L_i. It follows s_{i+1} = f_i(s_i) with
    # f_i(1) = [other_i == L_{i+1}], f_i(0) = f_i(1) and not take_first_i;
    # f_i is a constant or the identity, so s is a forward fill of the constants.
    nxt = np.append(first[1:], -1)
    hits_next = np.append(straddle[1:], False) & (other == nxt)
    f1, f0 = hits_next, hits_next & ~take_first
    const = f0 == f1
    last = np.maximum.accumulate(np.where(const, i, -1))
    s_next = np.where(last >= 0, f0[np.maximum(last, 0)], False)
    s = np.concatenate(([False], s_next[:-1]))
    return np.where(take_first & ~s, first, other)


def _ordered_values(ds: Dataset, field: str, order: np.ndarray) -> np.ndarray:
    """The check field in sampling order: a float vector, or an (N, K) boolean
    matrix of indicators of its K most frequent categories."""
    col = ds.column(field)
    typ = col.type
    if pa.types.is_integer(typ) or pa.types.is_floating(typ) or pa.types.is_boolean(typ):
        x = ds.numeric(field)[order]
        return np.where(np.isfinite(x), x, np.nanmean(x) if np.isfinite(x).any() else 0.0)
    cells = strata(ds, [field])
    codes, labels = cells.codes, cells.labels
    codes = codes[order]
    top = np.argsort(-np.bincount(codes, minlength=len(labels)), kind="stable")[:TOP_CATEGORIES]
    return codes[:, None] == top[None, :]


def autocorrelation(x: np.ndarray, max_lag: int) -> np.ndarray:
    """Autocorrelation at lags 0..max_lag (FFT; unbiased per-lag covariances).
    A matrix is treated as several series whose autocovariances are summed.

    Only short lags are needed, so the series is cut into blocks and each
    block is correlated (by FFT, all blocks at once) with itself plus the next
    max_lag values: exact, and O(N log block) instead of O(N log N).
    """
    x = x.reshape(len(x), -1)
    size = len(x)
    nfft = max(4096, 1 << int(np.ceil(np.log2(8 * max_lag + 1))))
    block = nfft - max_lag  # a block plus the next max_lag values fill one FFT
    n_blocks = -(-size // block)
    width = nfft
    acov = np.zeros(max_lag + 1)
    for j in range(x.shape[1]):
        padded = np.zeros(n_blocks * block + max_lag)
        padded[:size] = x[:, j]
        padded[:size] -= padded[:size].mean()
        segments = np.lib.stride_tricks.sliding_window_view(padded, width)[::block]
        spec_head = np.fft.rfft(segments[:, :block], nfft, axis=1)
        spec_seg = np.fft.rfft(segments, nfft, axis=1)
        cross = np.fft.irfft(np.conj(spec_head) * spec_seg, nfft, axis=1)[:, :max_lag + 1]
        acov += cross.sum(axis=0)
    acov /= size - np.arange(max_lag + 1)
    return acov / acov[0] if acov[0] > 0 else np.zeros(max_lag + 1)


def find_period(acf: np.ndarray, size: int) -> int | None:
    """The smallest lag p >= 2 where the autocorrelation has a local peak that
    is strong (>= ACF_THRESHOLD and well above noise) and rises ACF_DIP above
    the lowest value at shorter lags (a trend has no such dip)."""
    if len(acf) < 4:
        return None
    r = acf
    peak = np.zeros(len(r), dtype=bool)
    peak[2:-1] = (r[2:-1] >= r[1:-2]) & (r[2:-1] >= r[3:])
    low_before = np.minimum.accumulate(r)
    strong = r >= max(ACF_THRESHOLD, 5.0 / np.sqrt(max(size, 1)))
    ok = np.flatnonzero(peak & strong & (r - low_before >= ACF_DIP))
    return int(ok[0]) if len(ok) else None


def periodicity(values: np.ndarray, interval: float, positions: np.ndarray, locked: bool = True) -> dict:
    """Check the ordered values for a period the systematic sample could lock
    onto (`locked`: positions follow from one random start)."""
    size = len(values)
    max_lag = int(min(size // 2, max(np.ceil(3 * interval) + 2, 50)))
    acf = autocorrelation(values, max_lag) if max_lag >= 3 else np.zeros(1)
    period = find_period(acf, size)
    if period is None:
        return {"period": None, "max_lag": max_lag}
    phases = len(np.unique(positions % period))
    out = {"period": period, "acf": float(acf[period]), "phases_covered": phases, "max_lag": max_lag}
    if not locked or phases >= min(period, len(positions)):
        return out
    out["lock_error_ratio"] = ratio = lock_error_ratio(values, period, len(positions))
    if ratio >= MATERIAL_LOCK:
        out["warning"] = (f"the ordered rows repeat every {period} rows (autocorrelation {acf[period]:.2f}) and "
                          f"the interval {interval:.4g} makes the sample visit only {phases} of the {period} "
                          f"phases: estimates err by about {ratio:.2g}x their standard error in a way it does not "
                          f"show, so their CIs are too narrow; sort by another key (--sort-by) or use --variable-intervals")
        log.info(out["warning"])
    return out


def lock_error_ratio(values: np.ndarray, period: int, n: int) -> float:
    """sd over random starts of the systematic sample's mean of the phase means,
    over the SRS standard error of a mean of n rows (the largest over columns).

    This is the part of the error the SRS variance formula cannot see: the
    sample mean is pulled towards the mean of the phases the start lands on.
    """
    x = values.reshape(len(values), -1).astype(np.float64)
    big_n = len(x)
    phase = np.arange(big_n) % period
    counts = np.bincount(phase, minlength=period)
    means = np.stack([np.bincount(phase, weights=x[:, j], minlength=period) for j in range(x.shape[1])], axis=1)
    means /= np.maximum(counts, 1)[:, None]
    rows = min(n, LOCK_ROWS)
    j = np.arange(rows, dtype=np.int64) * big_n
    starts = (np.arange(LOCK_STARTS) * 2 + 1) * big_n // (2 * LOCK_STARTS)
    visits = np.stack([np.bincount((r + j) // n % period, minlength=period) for r in starts.tolist()])
    lock_var = ((visits @ means / rows - x.mean(axis=0)) ** 2).mean(axis=0)
    srs_var = (1 - n / big_n) * x.var(axis=0, ddof=1) / n if big_n > 1 else np.zeros(x.shape[1])
    ok = srs_var > 0
    return float(np.sqrt(lock_var[ok] / srs_var[ok]).max()) if ok.any() else 0.0
