"""The featurizer contract: a named, versioned, parametrized pure function
from an Arrow batch of rows to feature columns.

A featurizer has

* ``name`` and ``version`` (bump the version whenever the output for the same
  input and params changes, so stale caches are not reused),
* ``params``: its hyper-parameters (the ``__init__`` arguments, scikit-learn
  style: validated in ``__init__``, stored under the same names),
* ``columns``: the names of the columns it outputs,
* ``inputs``: the columns it reads (canonical ``id`` / ``prompt`` /
  ``response`` / ``messages``, or original ones),
* ``scope``: ``"row"`` (each row's features depend on that row only, so the
  store computes it chunk by chunk and Ray Data's ``map_batches`` can run it)
  or ``"global"`` (needs every row at once: near-duplicate clusters, k-means;
  ``compute`` then receives the whole table),
* ``depends_on()``: featurizers whose output columns it reads (they are
  computed first and appended to its input),
* ``compute(batch) -> dict[str, pa.Array]``: one value per input row, in order.
"""
from __future__ import annotations

import hashlib
import inspect
import json
from typing import Any, ClassVar, Literal

import pyarrow as pa

from thresher.errors import ThresherError, UsageError

Scope = Literal["row", "global"]
Batch = pa.RecordBatch | pa.Table
CANONICAL_INPUTS = ("id", "prompt", "response", "messages")


class Featurizer:
    """Base class; subclasses set the class attributes and implement `compute`."""

    name: ClassVar[str] = ""
    version: ClassVar[str] = "1"
    scope: ClassVar[Scope] = "row"
    inputs: ClassVar[tuple[str, ...]] = ("prompt", "response")
    output_columns: ClassVar[tuple[str, ...]] = ()
    chunk_rows: ClassVar[int | None] = None  # preferred chunk size (slow featurizers want small ones)
    loads_model: ClassVar[bool] = False  # on Ray: an actor pool, so each worker loads the model once
    # A global featurizer that takes a sharded pool's `ShardedInput` as it is
    # (its executor reads the shards on workers) instead of gathering every row here.
    reads_shards: ClassVar[bool] = False

    @property
    def columns(self) -> list[str]:
        """The names of the output columns, in output order."""
        return list(self.output_columns)

    @property
    def params(self) -> dict[str, Any]:
        """The hyper-parameters, read back from the attributes named like the
        `__init__` arguments (scikit-learn's `get_params`)."""
        sig = inspect.signature(type(self).__init__)
        names = [p.name for p in sig.parameters.values()
                 if p.name != "self" and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]
        return {n: getattr(self, n) for n in names}

    def depends_on(self) -> list["Featurizer"]:
        """Featurizers whose columns this one reads; none by default."""
        return []

    def compute(self, batch: Batch) -> dict[str, pa.Array]:
        """Feature columns for `batch` (one value per row, in row order)."""
        raise NotImplementedError

    def key(self, dependency_keys: tuple[str, ...] = ()) -> str:
        """`<name>-<version>-<hash of params and dependency keys>`; names a cache entry."""
        payload = json.dumps({"params": self.params, "deps": list(dependency_keys)},
                             sort_keys=True, default=repr)
        digest = hashlib.sha256(payload.encode()).hexdigest()[:12]
        return f"{self.name}-{self.version}-{digest}"

    def __call__(self, batch: Batch) -> pa.Table:
        """The feature columns of `batch` as a table (what Ray Data's
        `map_batches(featurizer, batch_format="pyarrow")` expects)."""
        return checked_table(self, self.compute(batch), batch.num_rows)

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.params.items())
        return f"{type(self).__name__}({args})"


def checked_table(featurizer: Featurizer, out: dict[str, pa.Array], num_rows: int) -> pa.Table:
    """`compute`'s output as a table, after checking it keeps the contract."""
    if sorted(out) != sorted(featurizer.columns):
        raise ThresherError(
            f"featurizer {featurizer.name!r} returned columns {sorted(out)}, "
            f"but declares {featurizer.columns}"
        )
    cols = [out[c] for c in featurizer.columns]
    for name, col in zip(featurizer.columns, cols):
        if len(col) != num_rows:
            raise ThresherError(
                f"featurizer {featurizer.name!r} returned {len(col)} values for column "
                f"{name!r} from a batch of {num_rows} rows"
            )
    return pa.Table.from_arrays(cols, names=featurizer.columns)


def string_column(batch: Batch, name: str) -> pa.Array:
    """A string column of `batch` as one Array with nulls as ""."""
    import pyarrow.compute as pc

    if name not in batch.column_names:
        raise UsageError(f"this feature needs a {name!r} column; the batch has {batch.column_names}")
    col = batch.column(name)
    if isinstance(col, pa.ChunkedArray):
        col = col.combine_chunks() if col.num_chunks else pa.array([], col.type)
    if pa.types.is_large_string(col.type) or pa.types.is_null(col.type):
        col = col.cast(pa.string())
    return pc.fill_null(col, "")


def check_choice(name: str, value: Any, choices: tuple) -> None:
    """A UsageError unless `value` is one of `choices`."""
    if value not in choices:
        raise UsageError(f"{name} must be one of {', '.join(map(str, choices))}, got {value!r}")


def check_positive_int(name: str, value: Any, allow_none: bool = False) -> None:
    """A UsageError unless `value` is an int >= 1 (or None when allowed)."""
    if value is None and allow_none:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise UsageError(f"{name} must be a positive integer, got {value!r}")
