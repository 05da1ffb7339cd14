"""`featurize`: compute (or read from the cache) a set of features for a
Dataset, as one table with `id` first and one row per input row, in order."""
from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Iterable, Mapping

import pyarrow as pa
import pyarrow.parquet as pq

from thresher.data.writers import atomic_path
from thresher.errors import UsageError
from thresher.features.base import Featurizer
from thresher.features.registry import DEFAULT_FEATURES, FeatureSpec, make
from thresher.features.store import FeatureStore, Progress

log = logging.getLogger(__name__)


def resolve(features: Iterable[FeatureSpec] | FeatureSpec | None = None) -> list[Featurizer]:
    """Featurizer instances for names, `{name: params}` specs (one or several)
    or instances; None gives the default cheap set. Repeats are dropped."""
    if features is None:
        features = DEFAULT_FEATURES
    if isinstance(features, Mapping) and "name" not in features:
        features = [{name: params} for name, params in features.items()]  # {text: {}, cluster: {k: 20}}
    if isinstance(features, (str, Featurizer, Mapping)):
        features = [features]
    out: list[Featurizer] = []
    seen: set[str] = set()
    for spec in features:
        f = make(spec)
        key = f.key()
        if key not in seen:
            seen.add(key)
            out.append(f)
    return out


def featurize(ds, features: Iterable[FeatureSpec] | FeatureSpec | None = None,
              cache_dir: str | os.PathLike | None = None, progress: Progress | None = None,
              store: FeatureStore | None = None) -> pa.Table:
    """`id`, then every requested feature's columns, one row per row of `ds`.

    `features`: names (see `registry.available()`), `{name: params}` specs or
    Featurizer instances; None means `DEFAULT_FEATURES`. Dependencies (the
    embeddings k-means needs) are computed and cached, but only appear in the
    output when requested. `progress(name, rows_done, rows_total)` is called
    after each part. Cache hits and misses are logged and recorded in the
    table's schema metadata under ``thresher.cache``.
    """
    featurizers = resolve(features)
    store = store or FeatureStore(cache_dir)
    before = store.stats.as_dict()
    names, arrays = ["id"], [_ids(ds)]
    owner: dict[str, str] = {}
    for f in featurizers:
        bind = getattr(f, "bind", None)  # pool-dependent params (fields, lm="auto") made concrete
        f = bind(ds, store) if callable(bind) else f
        table = store.get(ds, f, progress)
        for col in table.column_names:
            if col in owner or col == "id":
                raise UsageError(f"features {owner.get(col, 'id')!r} and {f.name!r} both output a column "
                                 f"{col!r}; request only one of them")
            owner[col] = f.name
            names.append(col)
            arrays.append(table.column(col))
    after = store.stats.as_dict()
    delta = {k: after[k] - before[k] for k in after}
    log.info("features: %d cached, %d computed (%d parts computed, %d resumed) under %s",
             delta["hits"], delta["misses"], delta["parts_computed"], delta["parts_resumed"], store.root)
    meta = {b"thresher.cache": json.dumps(delta).encode(),
            b"thresher.features": json.dumps([f.key() for f in featurizers]).encode()}
    return pa.Table.from_arrays(arrays, names=names).replace_schema_metadata(meta)


def export(table: pa.Table, path: str | os.PathLike, overwrite: bool = False) -> Path:
    """Write `table` as Parquet, atomically (temp file + rename); refuses to
    replace an existing file unless `overwrite`.

    The run statistics (`thresher.cache`: what came from the cache this time)
    stay on the in-memory table only: the same features give the same bytes
    whether they were computed or read from the cache.
    """
    from thresher.data.paths import check_output_path

    out = Path(path).expanduser()
    if out.suffix.lower() not in (".parquet", ".pq"):
        raise UsageError(f"{out}: features are written as Parquet; use a .parquet file name")
    check_output_path(out, (), overwrite, kind="file")
    meta = {k: v for k, v in (table.schema.metadata or {}).items() if k != b"thresher.cache"}
    with atomic_path(out) as tmp:
        pq.write_table(table.replace_schema_metadata(meta or None), tmp)
    return out


def _ids(ds) -> pa.Array:
    col = ds.column("id") if hasattr(ds, "column") else None
    if col is None:
        return pa.array(list(ds.ids), pa.string())
    if isinstance(col, pa.ChunkedArray):
        col = col.combine_chunks() if col.num_chunks else pa.array([], col.type)
    return col
