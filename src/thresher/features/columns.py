"""Feature columns by name: which featurizer makes each column, loading them
(computed and cached as needed) as numpy arrays, and appending them to a pool.

Every stage that asks for a feature by its column name (selectors, the
pipeline runner and its coverage guard, active learners, balance, reports,
designs that stratify on a feature) resolves it here.
"""
from __future__ import annotations

from typing import Iterable

import numpy as np
import pyarrow as pa

from thresher.data.dataset import Dataset
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


def attach_features(ds: Dataset, names: list[str], cache_dir: str | None = None) -> Dataset:
    """`ds` with feature columns (e.g. `response_words`, `cluster`) appended for the
    names it lacks as fields, so designs can stratify or size by features. The
    subset is still written from the original columns."""
    wanted = [n for n in dict.fromkeys(names) if n and n not in ds.fields and n in feature_sources()]
    if not wanted:
        return ds
    table = ds.table
    for name, values in load_features(ds, wanted, cache_dir=cache_dir).items():
        if values.ndim == 1:
            table = table.append_column(name, pa.array(values))
    return Dataset(table, ds.source, ids=ds._ids, raw=ds.raw, origin_rows=ds.origin_rows)


def attach_kmeans(ds: Dataset, k: int | None, cache_dir: str | None = None) -> Dataset:
    """`ds` with a `cluster` column: k-means on the static embeddings (k=None: the default rule)."""
    from thresher.features.registry import make
    from thresher.features.store import FeatureStore

    if "cluster" in ds.fields:
        return ds
    params = {} if k is None else {"k": k}
    clusters = FeatureStore(cache_dir).get(ds, make("cluster", **params)).column("cluster")
    return Dataset(ds.table.append_column("cluster", clusters), ds.source, ids=ds._ids, raw=ds.raw,
                   origin_rows=ds.origin_rows)
