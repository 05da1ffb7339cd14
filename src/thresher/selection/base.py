"""What selectors share: their inputs (scores, embeddings, token counts, read
from `features` or from the dataset's own fields), budgets, ranked takes and
Selection building (feature loading by column name lives in
`thresher.features.columns`; re-exported here).

A selector is a step: hyper-parameters in `__init__`, `requires` (feature
columns it needs) and `select(ds, budget, features) -> Selection`, where
`features` maps column name -> numpy array aligned with `ds`'s rows.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from thresher.core.budget import Budget, budget_rows, is_token_budget
from thresher.core.selection import Selection
from thresher.data.dataset import Dataset
from thresher.errors import UsageError
from thresher.features.columns import feature_sources, load_features, missing_column_message  # noqa: F401


def take_ranked(order: np.ndarray, budget: Budget | int | None, pool_size: int,
                tokens: np.ndarray | None) -> np.ndarray:
    """The longest prefix of `order` that fits the budget (rows or tokens)."""
    if tokens is not None:
        return order[: int(np.searchsorted(np.cumsum(tokens[order]), budget.value, side="right"))]
    n = budget_rows(budget, pool_size, required=False, at_most_pool=True)
    return order if n is None else order[:n]


def deterministic(indices: np.ndarray, *, method: str, params: dict[str, Any], seed: int | None, pool_size: int,
                  diagnostics: dict[str, Any] | None = None,
                  removed: dict[str, np.ndarray] | None = None) -> Selection:
    """A Selection for a selector that defines no inclusion probabilities."""
    indices = np.asarray(indices, dtype=np.int64)
    nan = np.full(len(indices), np.nan)
    sel = Selection(indices, nan, nan.copy(), method, params, seed, pool_size, diagnostics=diagnostics or {})
    sel.removed = removed or {}
    return sel


def not_selected(pool_size: int, kept: np.ndarray, reason: str) -> dict[str, np.ndarray]:
    mask = np.ones(pool_size, dtype=bool)
    mask[kept] = False
    rest = np.flatnonzero(mask)
    return {reason: rest} if len(rest) else {}


def score_fields(score: str) -> list[str]:
    """The field names of a score spec: "quality" or "complexity*quality"."""
    parts = [p.strip() for p in score.split("*")] if isinstance(score, str) else []
    if not parts or not all(parts):
        raise UsageError(f"score must be a field name or a product of field names like "
                         f"'complexity*quality', got {score!r}")
    return parts


def feature_vector(ds: Dataset, features: dict[str, np.ndarray] | None, name: str) -> np.ndarray:
    """A per-row number from `features[name]`, else from the dataset's field; finite."""
    if features is not None and name in features:
        values = np.asarray(features[name], dtype=np.float64)
        where = f"feature '{name}'"
    else:
        if not ds.has(name):
            from thresher.features.columns import missing_column_message

            raise UsageError(f"{ds.source.path}: {missing_column_message(name, ds.fields)}; "
                             f"or pass features={{'{name}': array}}")
        values = ds.numeric(name)
        where = f"{ds.source.path}: field '{name}'"
    if values.shape != (len(ds),):
        raise UsageError(f"{where} must hold one number per row ({len(ds)}), got shape {values.shape}")
    bad = np.flatnonzero(~np.isfinite(values))
    if len(bad):
        raise UsageError(f"{where} has {len(bad)} missing or non-finite values (first at row {int(bad[0]) + 1}); "
                         f"fill or filter them first")
    return values


def score_vector(ds: Dataset, features: dict[str, np.ndarray] | None, score: str) -> np.ndarray:
    """The score per row: one field, or the product of several."""
    out = np.ones(len(ds))
    for name in score_fields(score):
        out = out * feature_vector(ds, features, name)
    return out


def embedding_matrix(ds: Dataset, features: dict[str, np.ndarray] | None, name: str) -> np.ndarray:
    """The (N, d) float32 embedding from `features[name]` or an embedding field of the dataset."""
    if features is not None and name in features:
        emb = np.asarray(features[name])
    elif name in ds.fields:
        from thresher.features.embeddings import from_arrow

        emb = from_arrow(ds.column(name))
    else:
        raise UsageError(f"no embedding '{name}': compute it with `thresher featurize` (embedding feature) "
                         f"or pass features={{'{name}': array of shape (rows, dims)}}")
    if emb.ndim != 2 or len(emb) != len(ds):
        raise UsageError(f"embedding '{name}' must have shape ({len(ds)}, dims), got {emb.shape}")
    return np.ascontiguousarray(emb, dtype=np.float32)


def token_counts(ds: Dataset, features: dict[str, np.ndarray] | None) -> np.ndarray:
    """Per-row token counts (feature or field `tokens`); non-negative."""
    tokens = feature_vector(ds, features, "tokens")
    if (tokens < 0).any():
        raise UsageError(f"token counts must be non-negative (row {int(np.argmax(tokens < 0)) + 1})")
    return tokens


def budget_limits(budget: int | Budget | None, ds: Dataset, features: dict[str, np.ndarray] | None
                  ) -> tuple[int | None, np.ndarray | None, float | None]:
    """(max_rows, tokens, max_tokens) of a row/fraction or token budget (None: no limit)."""
    if budget is None:
        return None, None, None
    if is_token_budget(budget):
        return None, token_counts(ds, features), float(budget.value)
    return budget_rows(budget, len(ds)), None, None


def max_keepable(n: int, max_rows: int | None, tokens: np.ndarray | None, max_tokens: float | None) -> int:
    """An upper bound on how many rows a budget can hold (sizes the kept buffer)."""
    cap = n if max_rows is None else min(n, int(max_rows))
    if max_tokens is not None and tokens is not None:
        cap = min(cap, int(np.searchsorted(np.cumsum(np.sort(tokens)), max_tokens, side="right")))
    return cap
