"""What selectors share: feature loading by column name and Selection building.

A selector is a step: hyper-parameters in `__init__`, `requires` (feature
columns it needs) and `select(ds, budget, features) -> Selection`, where
`features` maps column name -> numpy array aligned with `ds`'s rows.
"""
from __future__ import annotations

from typing import Any, Iterable

import numpy as np
import pyarrow as pa

from thresher.core.budget import Budget
from thresher.core.selection import Selection
from thresher.errors import UsageError

# feature column -> the featurizer (registry name) that makes it
_SOURCES: dict[str, str] | None = None


def feature_sources() -> dict[str, str]:
    global _SOURCES
    if _SOURCES is None:
        from thresher.features.registry import make

        sources = {}
        for name in ("text", "quality", "tags", "exact_dup", "near_dup", "embed_static", "embed_minilm", "lm",
                     "cluster", "quality_score", "complexity", "lm_embed"):
            for col in make(name).columns:
                sources.setdefault(col, name)
        _SOURCES = sources
    return _SOURCES


def load_features(ds, columns: Iterable[str], cache_dir=None, store=None, progress=None) -> dict[str, np.ndarray]:
    """Numpy arrays for feature columns (computed and cached as needed).

    Columns the dataset itself has (e.g. a `score` field) are read from it;
    embeddings come back as L2-normalised float32 (n, d) matrices.
    """
    from thresher.features.registry import make
    from thresher.features.store import FeatureStore

    from thresher.features.base import Featurizer

    columns = list(dict.fromkeys(columns))
    out: dict[str, np.ndarray] = {}
    store = store or FeatureStore(cache_dir)
    sources = feature_sources()
    wanted = [c for c in columns if isinstance(c, str)]
    for col in columns:
        if isinstance(col, Featurizer):  # a featurizer with params (e.g. dedup on chosen fields): all its columns
            table = store.get(ds, _bound(col, ds, store), progress)
            out.update({name: _as_numpy(table.column(name)) for name in table.column_names})
            continue
        if col in out:
            continue
        if col in ds.fields:
            out[col] = _as_numpy(ds.column(col))
            continue
        if col not in sources:
            raise UsageError(missing_column_message(col, ds.fields))
        table = store.get(ds, _bound(make(sources[col]), ds, store), progress)
        for name in table.column_names:
            if name in wanted and name not in out:
                out[name] = _as_numpy(table.column(name))
    return out


def _bound(featurizer, ds, store):
    """A featurizer whose params depend on the pool (fields, "auto" options) made concrete."""
    bind = getattr(featurizer, "bind", None)
    return bind(ds, store) if callable(bind) else featurizer


# score columns users ask for, the featurizer that computes each, and how slow it is
_SCORE_HINTS = {"quality_score": "quality_score", "complexity": "complexity", "ifd": "lm", "ppl_response": "lm",
                "response_words": "text", "response_tokens": "text", "tokens": "text", "lm_embedding": "lm_embed"}


def missing_column_message(name: str, fields: Iterable[str]) -> str:
    """Why `name` is not a column, the featurizer(s) that compute the likely
    intended one, and the command to run."""
    import difflib

    from thresher.features.registry import FEATURIZERS, make

    sources = feature_sources()
    if name in sources:
        return (f"no feature or field '{name}' given; it is computed by the featurizer '{sources[name]}': "
                f"thresher featurize POOL --features {sources[name]} (thresher select / run compute it on "
                f"demand); fields: {', '.join(fields) or '(none)'}")
    parts = [f"unknown feature or field '{name}'"]
    if name in FEATURIZERS:
        cols = make(name).columns
        parts.append(f"'{name}' is a featurizer (columns: {', '.join(cols)}), not a column")
    guesses = difflib.get_close_matches(name, list(sources) + list(fields), n=3, cutoff=0.5)
    if name in ("quality", "score", "deita_quality") and "quality_score" not in guesses:
        guesses.insert(0, "quality_score")
    for guess in guesses[:3]:
        if guess in sources:
            parts.append(f"did you mean '{guess}'? it is computed by the featurizer '{sources[guess]}': "
                         f"thresher featurize POOL --features {sources[guess]}")
        else:
            parts.append(f"did you mean the field '{guess}'?")
    hints = ", ".join(f"{col} ({feat})" for col, feat in _SCORE_HINTS.items())
    parts.append(f"score columns and their featurizers: {hints}")
    parts.append(f"fields: {', '.join(fields) or '(none)'}")
    return "; ".join(parts)


def _as_numpy(col) -> np.ndarray:
    if isinstance(col, pa.ChunkedArray):
        col = col.combine_chunks()
    if pa.types.is_fixed_size_list(col.type):
        from thresher.features.embeddings import from_arrow

        emb = np.asarray(from_arrow(col), dtype=np.float32)
        norms = np.linalg.norm(emb, axis=1, keepdims=True)
        return emb / np.where(norms == 0, 1, norms)
    if pa.types.is_string(col.type) or pa.types.is_large_string(col.type) or pa.types.is_dictionary(col.type):
        return np.asarray(col.to_numpy(zero_copy_only=False), dtype=object)
    return col.to_numpy(zero_copy_only=False)


def budget_rows(budget: Budget | int | None, pool_size: int, required: bool = True) -> int | None:
    if budget is None:
        if required:
            raise UsageError("this selector needs a budget: --n, --fraction or --tokens")
        return None
    if isinstance(budget, (int, np.integer)):
        return int(budget)
    if budget.kind == "tokens":
        return None
    return min(budget.rows(pool_size), pool_size)


def token_counts(features: dict[str, np.ndarray], budget: Budget | int | None) -> np.ndarray | None:
    if isinstance(budget, Budget) and budget.kind == "tokens":
        if "tokens" not in features:
            raise UsageError("a token budget needs the 'tokens' feature")
        return np.asarray(features["tokens"], dtype=np.float64)
    return None


def take_ranked(order: np.ndarray, budget: Budget | int | None, pool_size: int,
                tokens: np.ndarray | None) -> np.ndarray:
    """The longest prefix of `order` that fits the budget (rows or tokens)."""
    if tokens is not None:
        return order[: int(np.searchsorted(np.cumsum(tokens[order]), budget.value, side="right"))]
    n = budget_rows(budget, pool_size, required=False)
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
