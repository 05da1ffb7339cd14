"""What the diversity selectors (facility location, k-center) take in: the
embedding matrix (a numpy array or an Arrow list column, checked finite and
2-D, optionally unit rows), per-row costs, and the budget as rows or as a
cost (tokens) limit, read from `features` or from the dataset's own fields.
The computing on those inputs is `thresher.selection._similarity`.
"""
from __future__ import annotations

import numbers
from typing import Any

import numpy as np
import pyarrow as pa

from thresher.core.budget import Budget, budget_rows, is_token_budget
from thresher.data.dataset import Dataset
from thresher.errors import UsageError


def as_matrix(X: Any, what: str = "embeddings") -> np.ndarray:
    """`X` as a C-contiguous float32 (n, d) array of finite values."""
    if isinstance(X, (pa.ChunkedArray, pa.Array)):
        X = _arrow_matrix(X, what)
    X = np.ascontiguousarray(X, dtype=np.float32)
    if X.ndim != 2:
        raise UsageError(f"{what} must be a 2-D array (rows, dims), got shape {X.shape}")
    if not np.isfinite(X).all():
        bad = int(np.flatnonzero(~np.isfinite(X).all(axis=1))[0])
        raise UsageError(f"{what} hold NaN or inf (first at row {bad + 1}); recompute or filter those rows")
    return X


def unit_rows(X: Any, what: str = "embeddings") -> np.ndarray:
    """`X` as float32 rows of unit length (cosine = dot); copies only if needed."""
    X = as_matrix(X, what)
    norms = np.sqrt(np.einsum("ij,ij->i", X, X, dtype=np.float64))
    zero = np.flatnonzero(norms == 0)
    if len(zero):
        raise UsageError(f"{what}: row {int(zero[0]) + 1} is all zeros, so its cosine similarity is undefined; "
                         f"drop empty rows or use metric='euclidean'")
    if np.abs(norms - 1).max(initial=0) > 1e-5:
        X = (X / norms[:, None]).astype(np.float32)
    return X


def _arrow_matrix(arr: pa.ChunkedArray | pa.Array, what: str) -> np.ndarray:
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    if not (pa.types.is_fixed_size_list(arr.type) or pa.types.is_list(arr.type)
            or pa.types.is_large_list(arr.type)):
        raise UsageError(f"{what} must be a list-of-numbers column, it is {arr.type}")
    if arr.null_count:
        raise UsageError(f"{what} has {arr.null_count} rows without a vector; compute or filter them first")
    lengths = np.diff(np.asarray(arr.offsets)) if not pa.types.is_fixed_size_list(arr.type) else None
    if lengths is not None and len(lengths) and (lengths != lengths[0]).any():
        raise UsageError(f"{what}: vectors have different lengths ({lengths.min()} to {lengths.max()})")
    flat = arr.flatten().to_numpy(zero_copy_only=False)
    return flat.reshape(len(arr), -1) if len(arr) else flat.reshape(0, 0)


def step_inputs(ds: Dataset, features: dict[str, Any] | None, name: str, budget: int | Budget,
                step: str) -> tuple[np.ndarray, int | None, np.ndarray | None, float | None]:
    """Embeddings and budget of a selector step: (X, k, costs, budget_cost).

    Embeddings come from `features[name]`, else from a list column `name` of
    `ds`. A token budget reads per-row token counts from `features["tokens"]`
    (else a `tokens` column); a row or fraction budget gives `k`.
    """
    X = _feature(ds, features, name, step, "an embedding per row; run `featurize` with embeddings")
    X = as_matrix(X, f"feature '{name}'")
    if len(X) != len(ds):
        raise UsageError(f"feature '{name}' has {len(X)} rows but the pool has {len(ds)}; "
                         f"recompute the features for this dataset")
    if is_token_budget(budget):
        tokens = _feature(ds, features, "tokens", step, "token counts per row for a token budget; "
                          "run `featurize` with lengths")
        if isinstance(tokens, (pa.ChunkedArray, pa.Array)):
            tokens = tokens.to_numpy(zero_copy_only=False)
        costs = check_costs(np.asarray(tokens, dtype=np.float64), len(ds), "feature 'tokens'")
        return X, None, costs, float(budget.value)
    return X, budget_rows(budget, len(ds)), None, None


def _feature(ds: Dataset, features: dict[str, Any] | None, name: str, step: str, hint: str) -> Any:
    if features is not None and name in features:
        return features[name]
    if name in ds.table.column_names:
        return ds.column(name)
    raise UsageError(f"{step} needs the feature '{name}' ({hint}), or pass features={{'{name}': array}}")


def check_costs(costs: Any, n: int, what: str = "costs") -> np.ndarray:
    """Per-row costs as float64: finite, non-negative, one per row."""
    costs = np.asarray(costs, dtype=np.float64)
    if costs.shape != (n,):
        raise UsageError(f"{what} must hold one number per row ({n}), got shape {costs.shape}")
    bad = np.flatnonzero(~np.isfinite(costs) | (costs < 0))
    if len(bad):
        raise UsageError(f"{what} must be finite and >= 0; row {int(bad[0]) + 1} has {costs[bad[0]]}")
    return costs


def check_budget(n: int, k: Any, budget_cost: Any, costs: Any) -> tuple[int | None, np.ndarray | None]:
    """Exactly one of a row count `k` or a cost budget (`budget_cost` with `costs`)."""
    if (k is None) == (budget_cost is None):
        raise UsageError("give exactly one budget: k (rows) or budget_cost (with per-row costs)")
    if k is not None:
        if isinstance(k, bool) or not isinstance(k, numbers.Integral) or k < 0:
            raise UsageError(f"k must be a non-negative integer, got {k!r}")
        if costs is not None:
            raise UsageError("costs are only used with budget_cost; drop one of them")
        return int(k), None
    if isinstance(budget_cost, bool) or not isinstance(budget_cost, numbers.Real) or not budget_cost >= 0:
        raise UsageError(f"budget_cost must be a number >= 0, got {budget_cost!r}")
    if costs is None:
        raise UsageError("budget_cost needs per-row costs (e.g. token counts)")
    return None, check_costs(costs, n)
