"""`Selection`: what every design and selector returns."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from thresher.data.dataset import Dataset


@dataclass
class Selection:
    """Rows chosen from a pool, with the design's inclusion probabilities.

    indices: int64 positions into the pool, in output order (pool order for
        designs; a row appears several times under with-replacement designs).
    pi: first-order inclusion probability of each selected row (NaN where a
        deterministic selector defines none). For with-replacement designs it
        is the probability the row is drawn at least once.
    weights: analysis / training weight of each selected row (1/pi for
        probability designs, NaN where undefined).
    labels: per selected row, named label arrays (e.g. "stratum", "cluster").
    strata: per stratum, {"stratum", "pool", "selected", ...} rows.
    """

    indices: np.ndarray
    pi: np.ndarray
    weights: np.ndarray
    method: str
    params: dict[str, Any]
    seed: int | None
    pool_size: int
    labels: dict[str, np.ndarray] = field(default_factory=dict)
    strata: list[dict[str, Any]] | None = None
    diagnostics: dict[str, Any] = field(default_factory=dict)
    # reason -> pool positions of rows this step dropped (feeds the recipe trace)
    removed: dict[str, np.ndarray] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.indices = np.asarray(self.indices, dtype=np.int64)
        self.pi = np.asarray(self.pi, dtype=np.float64)
        self.weights = np.asarray(self.weights, dtype=np.float64)
        n = len(self.indices)
        if self.pi.shape != (n,) or self.weights.shape != (n,):
            raise ValueError("pi and weights must align with indices")
        if n and (self.indices.min() < 0 or self.indices.max() >= self.pool_size):
            raise ValueError("indices out of the pool's range")

    def __len__(self) -> int:
        return len(self.indices)

    def take(self, ds: "Dataset") -> "Dataset":
        """The selected rows of `ds` as a new Dataset, in selection order."""
        return ds.take(self.indices)

    def manifest(self) -> dict[str, Any]:
        """The JSON-ready record of this selection (ids are added by the writer)."""
        return {
            "method": self.method,
            "params": _jsonable(self.params),
            "seed": self.seed,
            "pi": _floats_or_null(self.pi),
            "weights": _floats_or_null(self.weights),
            "strata": _jsonable(self.strata) if self.strata is not None else None,
            "diagnostics": _jsonable(self.diagnostics),
        }


def _floats_or_null(values: np.ndarray) -> list[float | None]:
    return [None if not np.isfinite(v) else float(v) for v in values.tolist()]


def _jsonable(obj: Any) -> Any:
    """Convert numpy scalars/arrays (recursively) into plain JSON types."""
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return _jsonable(obj.tolist())
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float) and not np.isfinite(obj):
        return None
    return obj
