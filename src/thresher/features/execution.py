"""Where featurizers run: the executor the FeatureStore hands its work to.

An executor does the two things that change with the machine count, and
nothing else; the feature columns it returns are the same bytes whichever
runs them, so cache entries are shared between executors:

* ``map_parts(featurizer, parts)``: a row featurizer over numbered input
  parts, yielding ``(part index, feature table)`` in part order, so the
  store writes each finished part at once (a killed run resumes there);
* ``near_duplicate_clusters(texts, **params)``: the global MinHash-LSH
  clusters (`minhash.near_duplicate_clusters`' ``dup_cluster``);
* ``map_shards(fn, items, *args)``: ``fn(item, *args)`` for each item (a
  shard of a pool read shard by shard), results in item order;
* ``describe()``: what goes into a manifest's ``executor`` field.

A part is a table, or a lazy part (``num_rows`` and ``materialize()``) that
reads its rows where it runs: a worker reads its own shard of the file.

`LocalExecutor` runs everything in this process. The Ray executor
(`thresher.pipeline.executors`) runs the same featurizer code on Ray Data
workers. The active executor is chosen with `use_executor` (a context
manager around a command, like joblib's backends), so the many places that
build a FeatureStore need not pass it along.
"""
from __future__ import annotations

from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any, Callable, Iterable, Iterator, Protocol

import numpy as np
import pyarrow as pa

from thresher.features.base import Featurizer, checked_table

Parts = Iterable[tuple[int, "pa.Table | LazyPart"]]


class LazyPart(Protocol):
    """Rows that are read where they are computed (a shard of the input file)."""

    num_rows: int

    def materialize(self) -> pa.Table: ...


def materialize(part: "pa.Table | LazyPart") -> pa.Table:
    return part if isinstance(part, pa.Table) else part.materialize()


class Executor(Protocol):
    name: str

    def map_parts(self, featurizer: Featurizer, parts: Parts) -> Iterator[tuple[int, pa.Table]]: ...

    def near_duplicate_clusters(self, texts: "pa.Array | list[LazyPart]", checkpoint: str | None = None,
                                **params: Any) -> np.ndarray: ...

    def map_shards(self, fn: Callable[..., Any], items: list, *args: Any) -> Iterator[Any]: ...

    def describe(self) -> dict[str, Any]: ...


class LocalExecutor:
    """Everything in this process, one part after another."""

    name = "local"

    def map_parts(self, featurizer: Featurizer, parts: Parts) -> Iterator[tuple[int, pa.Table]]:
        for index, part in parts:
            batch = part if featurizer.reads_shards else materialize(part)
            yield index, checked_table(featurizer, featurizer.compute(batch), batch.num_rows)

    def near_duplicate_clusters(self, texts: "pa.Array | list[LazyPart]", checkpoint: str | None = None,
                                **params: Any) -> np.ndarray:
        """One process computes every signature at once, so there is nothing to checkpoint."""
        from thresher.features.minhash import near_duplicate_clusters

        if isinstance(texts, list):
            texts = pa.concat_arrays([materialize(t) for t in texts]) if texts else pa.array([], pa.string())
        return np.asarray(near_duplicate_clusters(texts, **params).dup_cluster, np.int64)

    def map_shards(self, fn: Callable[..., Any], items: list, *args: Any) -> Iterator[Any]:
        for item in items:
            yield fn(item, *args)

    def describe(self) -> dict[str, Any]:
        return {"name": self.name}


LOCAL = LocalExecutor()
_CURRENT: ContextVar[Executor] = ContextVar("thresher_executor", default=LOCAL)


def current_executor() -> Executor:
    """The executor chosen by the innermost `use_executor` (local by default)."""
    return _CURRENT.get()


@contextmanager
def use_executor(executor: Executor | None) -> Iterator[Executor]:
    """Run the enclosed featurizing on `executor` (None: local)."""
    token = _CURRENT.set(executor or LOCAL)
    try:
        yield _CURRENT.get()
    finally:
        _CURRENT.reset(token)
