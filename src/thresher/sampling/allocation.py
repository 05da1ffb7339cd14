"""Sample allocation across strata: real-valued shares, then an exact integer
allocation (largest remainder) that sums to n and respects every bound.

Pure functions on stratum sizes; no data, no randomness.

- proportional: n_h ∝ N_h
- equal:        n_h ∝ 1 (non-empty strata)
- neyman:       n_h ∝ N_h·S_h
- optimal:      n_h ∝ N_h·S_h/sqrt(c_h)   (Cochran 1977, §5.5; c_h = cost per row)

Bounds per stratum: lower_h = min(min_per_stratum, N_h) and
upper_h = min(max_per_stratum, N_h). The real-valued shares are
x_h = clip(λ·w_h, lower_h, upper_h) with λ chosen so that Σ x_h = n: strata
that hit a bound are fixed there and the rest re-allocated, until none
violates a bound. Integers: floor(x_h), then the remaining rows go one each to
the strata with the largest fractional parts (ties: the earlier stratum).
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np

from thresher.errors import UsageError

ALLOCATIONS = ("proportional", "equal", "neyman", "optimal")


class Allocation(NamedTuple):
    """counts: integer rows per stratum (sum n). target: real-valued shares
    after the bounds. uncapped: n·w_h/Σw before any bound (what the design
    would like; above N_h means the stratum is too thin for it)."""

    counts: np.ndarray
    target: np.ndarray
    uncapped: np.ndarray


def allocation_weights(sizes: np.ndarray, allocation: str, sd: np.ndarray | None = None,
                       cost: np.ndarray | None = None) -> np.ndarray:
    """The un-normalized share w_h of each stratum under `allocation`."""
    sizes = np.asarray(sizes, dtype=np.float64)
    if allocation == "proportional":
        return sizes.copy()
    if allocation == "equal":
        return (sizes > 0).astype(np.float64)
    if allocation not in ("neyman", "optimal"):
        raise UsageError(f"allocation must be one of {', '.join(ALLOCATIONS)}; got {allocation!r}")
    if sd is None:
        raise UsageError(f"allocation={allocation!r} needs per-stratum standard deviations "
                         f"(variance_of=FIELD or sd={{stratum: sd}})")
    sd = np.asarray(sd, dtype=np.float64)
    if sd.shape != sizes.shape or not np.all(np.isfinite(sd)) or np.any(sd < 0):
        raise UsageError("per-stratum standard deviations must be finite, non-negative, one per stratum")
    if not np.any(sd[sizes > 0] > 0):
        return sizes.copy()  # every stratum is constant: Neyman degenerates to proportional
    # A constant stratum gets a vanishing (not zero) share so it still receives
    # rows, in proportion to its size, if the others cannot absorb the budget.
    sd = np.maximum(sd, sd.max() * 1e-12)
    w = sizes * sd
    if allocation == "optimal":
        if cost is None:
            raise UsageError("allocation='optimal' needs a cost per row for every stratum: cost={stratum: cost}")
        cost = np.asarray(cost, dtype=np.float64)
        if cost.shape != sizes.shape or not np.all(np.isfinite(cost)) or np.any(cost <= 0):
            raise UsageError("per-stratum costs must be finite and positive, one per stratum")
        w = w / np.sqrt(cost)
    return w


def allocate(sizes: np.ndarray, n: int, allocation: str = "proportional", *, sd: np.ndarray | None = None,
             cost: np.ndarray | None = None, min_per_stratum: int = 0,
             max_per_stratum: int | None = None) -> Allocation:
    """Rows per stratum for a total of exactly `n` rows."""
    sizes = np.asarray(sizes, dtype=np.int64)
    n = int(n)
    lower, upper = bounds(sizes, min_per_stratum, max_per_stratum)
    _check_feasible(n, lower, upper, sizes, min_per_stratum, max_per_stratum)
    w = allocation_weights(sizes, allocation, sd, cost)
    total_w = w.sum()
    uncapped = n * w / total_w if total_w > 0 else np.zeros(len(w))
    target = water_fill(w, float(n), lower.astype(np.float64), upper.astype(np.float64))
    counts = largest_remainder(target, n, lower, upper)
    return Allocation(counts, target, uncapped)


def bounds(sizes: np.ndarray, min_per_stratum: int = 0,
           max_per_stratum: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Per-stratum (lower, upper) row bounds; a stratum never gives more than N_h."""
    upper = sizes.copy() if max_per_stratum is None else np.minimum(sizes, int(max_per_stratum))
    lower = np.minimum(int(min_per_stratum), upper)
    return lower, upper


def _check_feasible(n: int, lower: np.ndarray, upper: np.ndarray, sizes: np.ndarray,
                    min_per_stratum: int, max_per_stratum: int | None) -> None:
    if n > sizes.sum():
        raise UsageError(f"cannot draw {n} rows without replacement from a pool of {int(sizes.sum())}")
    if lower.sum() > n:
        raise UsageError(f"min_per_stratum={min_per_stratum} over {len(sizes)} strata needs at least "
                         f"{int(lower.sum())} rows but the budget is {n}; raise the budget or lower min_per_stratum")
    if upper.sum() < n:
        raise UsageError(f"max_per_stratum={max_per_stratum} caps the sample at {int(upper.sum())} rows "
                         f"over {len(sizes)} strata but the budget is {n}; raise max_per_stratum or lower the budget")


def water_fill(w: np.ndarray, total: float, lower, upper) -> np.ndarray:
    """x = clip(λ·w, lower, upper) with Σx = total (needs Σlower <= total <= Σupper).

    `lower` / `upper` are arrays or scalars. Iterative variable fixing: at the
    unconstrained λ of the free entries, if clipping would remove more than it
    adds, λ must grow, so entries above their upper bound stay there and are
    fixed; otherwise the ones below their lower bound are fixed. Each round
    fixes at least one entry (a handful of rounds in practice).
    """
    w = np.asarray(w, dtype=np.float64)
    x = np.empty(len(w))
    idx, wf, lo, hi = np.arange(len(w)), w, lower, upper
    fixed_sum = 0.0
    while len(idx):
        rest, sw = total - fixed_sum, wf.sum()
        if sw <= 0:
            # Nothing left with a positive share: spread the rest by room.
            lo_a, hi_a = np.broadcast_to(lo, wf.shape), np.broadcast_to(hi, wf.shape)
            room = hi_a - lo_a
            x[idx] = lo_a + (rest - lo_a.sum()) * (room / room.sum() if room.sum() > 0 else 0.0)
            break
        cand = wf * (rest / sw)
        over, under = cand > hi, cand < lo
        e_up = (cand - hi)[over].sum() if over.any() else 0.0
        e_lo = (lo - cand)[under].sum() if under.any() else 0.0
        if e_up == 0 and e_lo == 0:
            x[idx] = cand
            break
        fix = over if e_up >= e_lo else under
        vals = np.broadcast_to(hi if e_up >= e_lo else lo, wf.shape)[fix]
        x[idx[fix]] = vals
        fixed_sum += vals.sum()
        keep = ~fix
        idx, wf, lo, hi = idx[keep], wf[keep], _kept(lo, keep), _kept(hi, keep)
    return x


def _kept(bound, keep: np.ndarray):
    return bound if np.ndim(bound) == 0 else bound[keep]


def largest_remainder(target: np.ndarray, n: int, lower: np.ndarray, upper: np.ndarray) -> np.ndarray:
    """Integers within [lower, upper] summing exactly to n, closest to `target`
    (floor, then +1 to the largest fractional parts; earlier stratum wins ties)."""
    base = np.clip(np.floor(target + 1e-9), lower, upper).astype(np.int64)
    rem = target - base
    short = n - int(base.sum())
    while short != 0:
        cand = np.flatnonzero(base < upper) if short > 0 else np.flatnonzero(base > lower)
        if not len(cand):
            raise UsageError(f"no integer allocation of {n} rows fits the per-stratum bounds")
        if short > 0:
            pick = cand[np.argsort(-rem[cand], kind="stable")[:short]]
            base[pick] += 1
        else:
            pick = cand[np.argsort(rem[cand], kind="stable")[:-short]]
            base[pick] -= 1
        rem = target - base
        short = n - int(base.sum())
    return base
