"""Where featurizers run: the executor the FeatureStore hands its work to.

An executor does the two things that change with the machine count, and
nothing else; the feature columns it returns are the same bytes whichever
runs them, so cache entries are shared between executors:

* ``map_parts(featurizer, parts)``: a row featurizer over numbered input
  parts, yielding ``(part index, feature table)`` in part order, so the
  store writes each finished part at once (a killed run resumes there);
* ``near_duplicate_clusters(texts, **params)``: the global MinHash-LSH
  clusters (`minhash.near_duplicate_clusters`' ``dup_cluster``);
* ``describe()``: what goes into a manifest's ``executor`` field.

`LocalExecutor` runs everything in this process. The Ray executor
(`thresher.pipeline.executors`) runs the same featurizer code on Ray Data
workers. The active executor is chosen with `use_executor` (a context
manager around a command, like joblib's backends), so the many places that
build a FeatureStore need not pass it along.
"""
from __future__ import annotations

from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any, Iterable, Iterator, Protocol

import numpy as np
import pyarrow as pa

from thresher.features.base import Featurizer, checked_table

Parts = Iterable[tuple[int, pa.Table]]


class Executor(Protocol):
    name: str

    def map_parts(self, featurizer: Featurizer, parts: Parts) -> Iterator[tuple[int, pa.Table]]: ...

    def near_duplicate_clusters(self, texts: pa.Array, **params: Any) -> np.ndarray: ...

    def describe(self) -> dict[str, Any]: ...


class LocalExecutor:
    """Everything in this process, one part after another."""

    name = "local"

    def map_parts(self, featurizer: Featurizer, parts: Parts) -> Iterator[tuple[int, pa.Table]]:
        for index, batch in parts:
            yield index, checked_table(featurizer, featurizer.compute(batch), batch.num_rows)

    def near_duplicate_clusters(self, texts: pa.Array, **params: Any) -> np.ndarray:
        from thresher.features.minhash import near_duplicate_clusters

        return np.asarray(near_duplicate_clusters(texts, **params).dup_cluster, np.int64)

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
