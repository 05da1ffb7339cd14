"""Field targeting: which text of a row a featurizer reads.

A field list names columns of the pool (``instruction``, ``input``,
``output`` of an Alpaca file, any string column) or the canonical ``prompt``
/ ``response``. Where the pool has no column ``instruction`` / ``output``
(chat formats), they mean the prompt / the response. Several fields are
joined by a blank line, empty ones left out. ``"both"`` is prompt + response.
"""
from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc

from thresher.errors import UsageError
from thresher.features.base import Batch, Featurizer, string_column

SIDES = ("prompt", "response", "both")
ALIASES = {"instruction": "prompt", "output": "response"}
SEPARATOR = "\n\n"


def parse_fields(fields) -> str | list[str]:
    """"prompt" / "response" / "both", or a list of field names ("a,b" and ["a", "b"] alike)."""
    if fields is None:
        return "both"
    if isinstance(fields, str):
        if fields in SIDES:
            return fields
        fields = [f.strip() for f in fields.split(",")]
    if not isinstance(fields, (list, tuple)) or not fields or not all(isinstance(f, str) and f for f in fields):
        raise UsageError(f"fields must be prompt, response, both or a list of field names, got {fields!r}")
    fields = list(dict.fromkeys(fields))
    return fields[0] if len(fields) == 1 and fields[0] in SIDES else fields


def input_columns(field: str | list[str]) -> tuple[str, ...]:
    if isinstance(field, str):
        return ("prompt", "response") if field == "both" else (field,)
    return tuple(field)


def resolve_fields(ds, field: str | list[str]) -> str | list[str]:
    """`field` with aliases mapped to columns this pool has; a clear error for unknown names."""
    if isinstance(field, str):
        return field
    out = []
    for name in field:
        if name in ds.fields or name in ("prompt", "response"):
            out.append(name)
        elif name in ALIASES:
            out.append(ALIASES[name])
        else:
            raise UsageError(f"fields: no field {name!r} in {ds.source.path} (fields: {', '.join(ds.fields)}; "
                             f"also prompt, response, instruction, output)")
    out = list(dict.fromkeys(out))
    if out == ["prompt", "response"]:
        return "both"
    return out[0] if len(out) == 1 and out[0] in SIDES else out


def field_text(batch: Batch, field: str | list[str]) -> pa.Array:
    """The text of `field` per row: one column, or several joined by a blank line (empty ones skipped)."""
    names = input_columns(field)
    joined = _as_string(batch, names[0])
    for name in names[1:]:
        nxt = _as_string(batch, name)
        both = pc.binary_join_element_wise(joined, nxt, SEPARATOR)
        both = pc.if_else(pc.equal(pc.utf8_length(nxt), 0), joined, both)
        joined = pc.if_else(pc.equal(pc.utf8_length(joined), 0), nxt, both)
    return joined


def _as_string(batch: Batch, name: str) -> pa.Array:
    col = batch.column(name) if name in batch.column_names else None
    if col is not None and not (pa.types.is_string(col.type) or pa.types.is_large_string(col.type)
                                or pa.types.is_null(col.type)):
        if pa.types.is_nested(col.type):
            raise UsageError(f"field {name!r} is {col.type}; only text (or scalar) fields can be targeted")
        col = pc.cast(col, pa.string())
        return pc.fill_null(col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col, "")
    return string_column(batch, name)


class OnFields(Featurizer):
    """Featurizer `feature` (a registry name, with `params`) computed as if each
    row's response were the text of `fields` (the prompt stays the prompt).
    Response-side signals (quality signals, response_* lengths, hashes and
    embeddings with field="response") then describe the chosen fields."""

    version = "1"

    def __init__(self, feature: str, fields, params: dict | None = None):
        from thresher.features.lookup import make

        self.feature = feature
        self.fields = parse_fields(fields)
        self.params_ = dict(params or {})
        self._inner = make(feature, **self.params_)
        self.name = f"{self._inner.name}@fields"
        self.scope = self._inner.scope
        self.chunk_rows = self._inner.chunk_rows
        self.loads_model = self._inner.loads_model
        self.output_columns = tuple(self._inner.columns)
        extra = [c for c in self._inner.inputs if c != "response"]
        self.inputs = tuple(dict.fromkeys([*extra, *input_columns(self.fields)]))

    @property
    def params(self) -> dict:
        return {"feature": self.feature, "fields": self.fields, "params": self.params_}

    def depends_on(self) -> list[Featurizer]:
        return self._inner.depends_on()

    def bind(self, ds, store) -> Featurizer:
        """Aliases resolved for this pool; the plain featurizer when the fields are just the response."""
        fields = resolve_fields(ds, self.fields)
        if fields == "response":
            return self._inner
        return self if fields == self.fields else OnFields(self.feature, fields, self.params_)

    def compute(self, batch: Batch) -> dict[str, pa.Array]:
        names = [c for c in batch.column_names if c != "response"]
        cols = [batch.column(c) for c in names]
        table = pa.Table.from_arrays([*cols, field_text(batch, self.fields)], names=[*names, "response"])
        return self._inner.compute(table)

    def __repr__(self) -> str:
        return f"OnFields({self.feature!r}, {self.fields!r}, {self.params_!r})"
