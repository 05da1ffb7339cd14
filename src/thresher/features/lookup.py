"""Featurizers by name: the table and `make`, below every featurizer module.

`thresher.features.registry` fills `FEATURIZERS` (it imports every featurizer
and is imported with the `thresher.features` package, so the table is full
before any featurizer runs); a featurizer that is built on another one by
name (k-means on an embedding, a featurizer on chosen fields) calls `make`
from here, so no featurizer module imports the registry.
"""
from __future__ import annotations

from typing import Any, Callable, Mapping

from thresher.errors import UsageError
from thresher.features.base import Featurizer

# name -> featurizer class (or partial); filled by `thresher.features.registry`
FEATURIZERS: dict[str, Callable[..., Featurizer]] = {}

FeatureSpec = str | Featurizer | Mapping[str, Any]


def available() -> list[str]:
    """The registered featurizer names."""
    return sorted(FEATURIZERS)


def make(spec: FeatureSpec, **params: Any) -> Featurizer:
    """A featurizer from a name (`"quality"`), a name with params
    (`{"cluster": {"k": 20}}` or `{"name": "cluster", "k": 20}`), or an instance."""
    if isinstance(spec, Featurizer):
        if params:
            raise UsageError("give params when naming a featurizer, not with an instance")
        return spec
    if isinstance(spec, Mapping):
        spec = dict(spec)
        if "name" in spec:
            name = spec.pop("name")
            return make(name, **{**spec, **params})
        if len(spec) != 1:
            raise UsageError(f"a feature spec is a name or {{name: params}}, got {spec!r}")
        (name, extra), = spec.items()
        return make(name, **{**(extra or {}), **params})
    if not isinstance(spec, str) or spec not in FEATURIZERS:
        raise UsageError(f"unknown feature {spec!r}; available: {', '.join(available())}")
    try:
        return FEATURIZERS[spec](**params)
    except TypeError as exc:
        raise UsageError(f"feature {spec!r}: {exc}") from exc
