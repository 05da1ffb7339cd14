"""Shared plumbing for the probability designs: parameters and their
validation, seeds, and simple random sampling within groups (budgets:
`thresher.core.budget.budget_rows`)."""
from __future__ import annotations

import functools
import inspect
import numbers
from typing import Any

import numpy as np

from thresher.core.rng import make_rng
from thresher.data.dataset import Dataset
from thresher.errors import UsageError


class Design:
    """Base class: scikit-learn style parameters (stored as given) and seeding."""

    method = "design"

    def get_params(self) -> dict[str, Any]:
        """Constructor parameters as given, except `random_state` (it is the Selection's `seed`)."""
        return {name: getattr(self, name) for name in _param_names(type(self))}

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in {**self.get_params(), "random_state": self.random_state}.items())
        return f"{type(self).__name__}({args})"

    def _rng(self) -> np.random.Generator:
        return make_rng(self.random_state)

    def _seed(self) -> int | None:
        return int(self.random_state) if isinstance(self.random_state, numbers.Integral) else None


@functools.lru_cache(maxsize=None)
def _param_names(cls: type) -> tuple[str, ...]:
    return tuple(p for p in inspect.signature(cls.__init__).parameters if p not in ("self", "random_state"))


def check_random_state(value: Any) -> None:
    """`random_state` must be None, a non-negative int or a numpy Generator."""
    if value is None or isinstance(value, np.random.Generator):
        return
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 0:
        raise UsageError(f"random_state must be a non-negative integer seed or None, got {value!r}")


def check_choice(name: str, value: Any, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise UsageError(f"{name} must be one of {', '.join(map(repr, choices))}; got {value!r}")


def check_int(name: str, value: Any, minimum: int, allow_none: bool = False) -> None:
    if value is None and allow_none:
        return
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise UsageError(f"{name} must be an integer >= {minimum}, got {value!r}")


def check_number(name: str, value: Any, low: float | None = None, high: float | None = None,
                 low_open: bool = False, allow_none: bool = False) -> None:
    if value is None and allow_none:
        return
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool) and np.isfinite(value)
    if ok and low is not None:
        ok = value > low if low_open else value >= low
    if ok and high is not None:
        ok = value <= high
    if not ok:
        bound = []
        if low is not None:
            bound.append(f"{'>' if low_open else '>='} {low}")
        if high is not None:
            bound.append(f"<= {high}")
        limits = f" {' and '.join(bound)}" if bound else ""
        raise UsageError(f"{name} must be a finite number{limits}, got {value!r}")


def check_field_name(name: str, value: Any, allow_none: bool = False) -> None:
    if value is None and allow_none:
        return
    if not isinstance(value, str) or not value:
        raise UsageError(f"{name} must be a field name (a non-empty string), got {value!r}")


def check_without_replacement(n: int, pool_size: int, hint: str = "lower the budget") -> None:
    if n > pool_size:
        raise UsageError(f"cannot draw {n} rows without replacement from a pool of {pool_size}; {hint}")


def grouped_order(codes: np.ndarray, n_groups: int) -> np.ndarray:
    """Row positions grouped by code, pool order kept within a group.

    A stable argsort on 8/16-bit codes is a radix sort (linear time); wider
    codes fall back to numpy's stable merge sort.
    """
    if n_groups <= 256:
        small = codes.astype(np.uint8)
    elif n_groups <= 65536:
        small = codes.astype(np.uint16)
    else:
        small = codes
    return np.argsort(small, kind="stable")


def srs_within_groups(codes: np.ndarray, sizes: np.ndarray, take: np.ndarray,
                      rng: np.random.Generator) -> np.ndarray:
    """A simple random sample of `take[g]` of the `sizes[g]` rows of each group g.

    Returns the selected row positions in pool order. No full sort of the
    pool: a Bernoulli pre-sample with a generous rate per group gives a
    candidate set that, given its size, is a uniform subset of the group; an
    SRS of take[g] among those candidates is then an SRS of the group. A group
    whose candidates fall short (a ~7-sigma event) uses all its rows instead,
    which keeps the design exact.
    """
    sizes = np.asarray(sizes, dtype=np.int64)
    take = np.asarray(take, dtype=np.int64)
    if int(take.sum()) == 0:
        return np.empty(0, dtype=np.int64)
    with np.errstate(divide="ignore", invalid="ignore"):
        rate = np.where(take > 0, (take + 7.0 * np.sqrt(take) + 7.0) / sizes, 0.0)
    # 16-bit keys: a Bernoulli(ceil(rate·2^16)/2^16) pre-sample. Any rate works
    # as long as a group shares it, and small keys halve the memory traffic.
    threshold = np.ceil(np.minimum(rate, 1.0) * 65536).astype(np.int32)
    keys = rng.integers(0, 65536, size=len(codes), dtype=np.uint16)
    cand = np.flatnonzero(keys < np.take(threshold, codes))
    cand_codes = codes[cand]
    short = np.bincount(cand_codes, minlength=len(sizes)) < take
    if short.any():
        cand = np.flatnonzero(np.isin(codes, np.flatnonzero(short)) | _mask(len(codes), cand))
        cand_codes = codes[cand]
    # Candidates in random order, then a stable sort by group: each group's
    # candidates come out in random order, so the first take[g] are an SRS.
    perm = rng.permutation(len(cand))
    grouped = perm[grouped_order(cand_codes[perm], len(sizes))]
    counts = np.bincount(cand_codes, minlength=len(sizes))
    starts = np.cumsum(counts) - counts
    rank = np.arange(len(cand)) - np.repeat(starts, counts)
    keep = _mask(len(cand), grouped[rank < np.repeat(take, counts)])
    return cand[keep]


def _mask(size: int, positions: np.ndarray) -> np.ndarray:
    out = np.zeros(size, dtype=bool)
    out[positions] = True
    return out


def label_array(labels: list[str], codes: np.ndarray) -> np.ndarray:
    """Per-row label strings from codes (a small lookup table, then a take)."""
    table = np.asarray(labels, dtype=str) if labels else np.empty(0, dtype=str)
    return table[codes]


def numeric_column(ds: Dataset, field: str, what: str, allow_nan: bool = False) -> np.ndarray:
    """A numeric column, with an actionable error on missing values."""
    values = ds.numeric(field)
    if not allow_nan:
        bad = np.flatnonzero(~np.isfinite(values))
        if len(bad):
            raise UsageError(f"{ds.source.path}: field '{field}' ({what}) has {len(bad)} missing or "
                             f"non-finite values (first at row {int(bad[0]) + 1}); fill or filter them first")
    return values
