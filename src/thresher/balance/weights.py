"""Class weights `w_c = N / (C * N_c)`, optionally smoothed by a power."""
from __future__ import annotations

import numpy as np

from thresher.errors import UsageError


def class_weight_table(labels: np.ndarray, power: float = 1.0) -> dict:
    """{class: weight}. power=1 is scikit-learn's "balanced"; 0 gives all ones; 0.5 is a smoothed middle."""
    labels = np.asarray(labels)
    _check(labels, power)
    classes, counts = np.unique(labels, return_counts=True)
    weights = (labels.size / (classes.size * counts.astype(np.float64))) ** power
    return {c.item() if hasattr(c, "item") else c: float(w) for c, w in zip(classes, weights)}


def class_weights(labels: np.ndarray, power: float = 1.0) -> np.ndarray:
    """Per-row weights (float64, aligned with `labels`) from `class_weight_table`."""
    labels = np.asarray(labels)
    _check(labels, power)
    classes, inverse, counts = np.unique(labels, return_inverse=True, return_counts=True)
    return ((labels.size / (classes.size * counts.astype(np.float64))) ** power)[inverse]


def weights_from_counts(counts: np.ndarray, power: float = 1.0) -> np.ndarray:
    """Per-class weights `(N / (C * N_c)) ** power` from the class sizes `counts` (all > 0)."""
    counts = np.asarray(counts, dtype=np.float64)
    if counts.size == 0 or (counts <= 0).any():
        raise UsageError("class weights need at least one row in every class")
    _check(counts, power)
    return (counts.sum() / (counts.size * counts)) ** power


def _check(labels: np.ndarray, power: float) -> None:
    if labels.size == 0:
        raise UsageError("class weights need at least one labeled row")
    if not 0.0 <= power <= 1.0:
        raise UsageError(f"class-weight power must be in [0, 1], got {power}")
