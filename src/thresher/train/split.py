"""Held-out splits that never cut a group, and nested subsets for learning curves."""
from __future__ import annotations

from typing import Sequence

import numpy as np

from thresher.core.rng import make_rng
from thresher.errors import UsageError


def group_split(n_rows: int, test_fraction: float, seed: int | None = 0, groups: Sequence | None = None,
                stratify: Sequence | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Split rows 0..n_rows-1 into (train_idx, test_idx), both sorted.

    Every group (rows sharing a `groups` value, e.g. an augmented row and its
    source, or exact duplicates) lands on one side. The test side holds as
    close to `test_fraction * n_rows` rows as whole groups allow; with
    `stratify`, that target is met within each stratum (a group counts in the
    stratum of its first row), so class proportions are kept.
    """
    n_rows = _check_rows(n_rows)
    if not (isinstance(test_fraction, (int, float)) and 0 < test_fraction < 1):
        raise UsageError(f"holdout fraction must be in (0, 1), got {test_fraction!r}")
    rng = make_rng(seed)
    group_codes = _codes(groups, n_rows, "groups")
    n_groups = int(group_codes.max()) + 1
    sizes = np.bincount(group_codes, minlength=n_groups)
    first_row = np.full(n_groups, n_rows, dtype=np.int64)
    np.minimum.at(first_row, group_codes, np.arange(n_rows))
    strata = _codes(stratify, n_rows, "stratify")[first_row] if stratify is not None else np.zeros(n_groups, np.int64)
    order = rng.permutation(n_groups)
    in_test = np.zeros(n_groups, dtype=bool)
    stratum_rows = np.bincount(strata, weights=sizes).astype(np.int64)
    targets = _largest_remainder(stratum_rows * test_fraction)
    for s in np.flatnonzero(stratum_rows):
        members = order[strata[order] == s]
        in_test[members[:_cut(np.cumsum(sizes[members]), targets[s])]] = True
    test_mask = in_test[group_codes]
    if test_mask.all() or not test_mask.any():
        raise UsageError(f"a holdout of {test_fraction:g} leaves one side empty: {n_rows} rows in "
                         f"{n_groups} groups; use a larger pool or another fraction")
    return np.flatnonzero(~test_mask), np.flatnonzero(test_mask)


def nested_subsets(n_rows: int, fractions: Sequence[float], seed: int | None = 0,
                   strata: Sequence | None = None) -> list[np.ndarray]:
    """One index array per fraction (rounded, at least one row), each inside the next larger one.

    All subsets are prefixes of one seeded ordering. With `strata`, rows are
    ordered by their fractional rank inside a shuffled stratum, so every
    prefix holds each stratum in (close to) its pool proportion.
    """
    n_rows = _check_rows(n_rows)
    fr = np.asarray(list(fractions), dtype=np.float64)
    if fr.size == 0 or not np.all((fr > 0) & (fr <= 1)):
        raise UsageError(f"fractions must be in (0, 1], got {list(fractions)}")
    rng = make_rng(seed)
    if strata is None:
        order = rng.permutation(n_rows)
    else:
        codes = _codes(strata, n_rows, "strata")
        shuffled = rng.permutation(n_rows)
        by_stratum = shuffled[np.argsort(codes[shuffled], kind="stable")]
        counts = np.bincount(codes)
        starts = np.r_[0, np.cumsum(counts)[:-1]]
        rank = np.arange(n_rows) - starts[codes[by_stratum]]
        key = (rank + rng.random(n_rows)) / counts[codes[by_stratum]]
        order = by_stratum[np.argsort(key, kind="stable")]
    sizes = np.maximum(1, np.floor(fr * n_rows + 0.5).astype(np.int64))
    return [np.sort(order[:k]) for k in sizes]


def _cut(cumulative: np.ndarray, target: int) -> int:
    """How many leading groups give a total closest to `target` rows (ties: fewer)."""
    if target <= 0 or cumulative.size == 0:
        return 0
    totals = np.r_[0, cumulative]
    return int(np.argmin(np.abs(totals - target)))


def _largest_remainder(quotas: np.ndarray) -> np.ndarray:
    """Integers summing to round(sum(quotas)), each floor or ceil of its quota."""
    base = np.floor(quotas).astype(np.int64)
    short = int(np.floor(quotas.sum() + 0.5)) - int(base.sum())
    if short > 0:
        base[np.argsort(-(quotas - base), kind="stable")[:short]] += 1
    return base


def _codes(values: Sequence | None, n_rows: int, name: str) -> np.ndarray:
    """Dense int codes for `values` (None: every row its own code)."""
    if values is None:
        return np.arange(n_rows, dtype=np.int64)
    arr = np.asarray(values)
    if arr.shape != (n_rows,):
        raise UsageError(f"{name} has {arr.shape[0] if arr.ndim else 0} values for {n_rows} rows")
    if arr.dtype == object:
        arr = arr.astype(str)
    return np.unique(arr, return_inverse=True)[1].astype(np.int64).reshape(-1)


def _check_rows(n_rows: int) -> int:
    if isinstance(n_rows, bool) or not isinstance(n_rows, (int, np.integer)) or n_rows < 1:
        raise UsageError(f"need a positive number of rows, got {n_rows!r}")
    return int(n_rows)


def row_groups(ds, group_field: str | None = None) -> np.ndarray:
    """A group code per row of `ds`, for `group_split`.

    Rows are joined when their content is identical, and when one row's
    `group_field` value (default: `_source_id` if the pool has it, as
    augmented rows do) equals another row's id or `group_field` value, so an
    augmented row stays with its source.
    """
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    from thresher.data.ids import _group_codes

    n = len(ds)
    if group_field is None and "_source_id" in ds.fields:
        group_field = "_source_id"
    all_rows = np.arange(n)
    content = _group_codes(ds)
    edges = [(all_rows, content)]  # (row, node) pairs; content nodes first
    offset = int(content.max()) + 1 if n else 0
    if group_field is not None:
        ids = np.asarray(ds.ids, dtype=object).astype(str)
        linked = ds.column(group_field).to_pylist()
        valid = np.flatnonzero([v is not None for v in linked])
        keys = np.asarray([str(linked[i]) for i in valid], dtype=str)
        codes = np.unique(np.r_[ids, keys], return_inverse=True)[1].reshape(-1) + offset
        edges += [(all_rows, codes[:n]), (valid, codes[n:])]  # id and group value share one node space
        offset = int(codes.max()) + 1
    r = np.concatenate([e[0] for e in edges])
    c = np.concatenate([e[1] for e in edges]) + n
    offset += n
    graph = coo_matrix((np.ones(len(r), dtype=np.int8), (r, c)), shape=(offset, offset))
    _, labels = connected_components(graph, directed=False)
    return np.unique(labels[:n], return_inverse=True)[1].astype(np.int64)


def holdout_split(pool, fraction: float, seed: int | None = 0, label_field: str | None = None,
                  group_field: str | None = None):
    """(train Dataset, held-out Dataset) from `pool`: `group_split` over
    `row_groups` (duplicates and augmented rows stay together), stratified by
    `label_field` when given."""
    stratify = None
    if label_field is not None:
        stratify = np.asarray(pool.categorical([label_field])[0])
    train, test = group_split(len(pool), fraction, seed, groups=row_groups(pool, group_field), stratify=stratify)
    return pool.take(train), pool.take(test)
