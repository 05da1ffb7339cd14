"""Stopping rules for the active-learning loop.

Each rule looks at the history so far (one dict per round with `round`,
`labeled`, a held-out score such as `accuracy`, and `kappa_vs_prev`) and
returns a reason string when the loop should stop, else None.

- `BudgetRule`: a maximum number of labels and/or rounds.
- `PlateauRule`: the held-out score has not improved on its earlier best by
  more than `min_delta` within the last `patience` rounds.
- `StabilizingPredictions` (Bloodgood & Vijay-Shanker 2009): Cohen's kappa
  between consecutive rounds' predictions on a fixed unlabeled stop set has
  been at least `threshold` for `window` rounds in a row.
"""
from __future__ import annotations

import numbers
from typing import Any, Sequence

import numpy as np

from thresher.errors import UsageError


def cohen_kappa(a: Sequence[Any], b: Sequence[Any]) -> float:
    """Cohen's kappa between two label vectors (1.0 when they agree on a single label)."""
    a, b = np.asarray(a, dtype=object).astype(str), np.asarray(b, dtype=object).astype(str)
    if a.shape != b.shape or a.ndim != 1:
        raise UsageError("kappa needs two label vectors of the same length")
    if len(a) == 0:
        raise UsageError("kappa needs at least one row")
    _, codes = np.unique(np.concatenate([a, b]), return_inverse=True)
    ca, cb = codes[: len(a)], codes[len(a):]
    k = int(codes.max()) + 1
    po = float(np.mean(ca == cb))
    pe = float(np.dot(np.bincount(ca, minlength=k), np.bincount(cb, minlength=k))) / len(a) ** 2
    if pe >= 1.0:
        return 1.0 if po == 1.0 else 0.0
    return (po - pe) / (1.0 - pe)


def _check_number(name: str, value: Any, low: float, integer: bool = False, allow_none: bool = False) -> None:
    if value is None and allow_none:
        return
    kind = numbers.Integral if integer else numbers.Real
    if isinstance(value, bool) or not isinstance(value, kind) or not value >= low:
        raise UsageError(f"{name} must be {'an integer' if integer else 'a number'} >= {low}, got {value!r}")


class StoppingRule:
    """Base: `check(history) -> reason | None`."""

    name = "rule"

    def check(self, history: list[dict]) -> str | None:
        raise NotImplementedError


class BudgetRule(StoppingRule):
    """Stop once `max_labels` rows are labeled or `max_rounds` query rounds are done."""

    name = "budget"

    def __init__(self, max_labels: int | None = None, max_rounds: int | None = None):
        _check_number("max_labels", max_labels, 1, integer=True, allow_none=True)
        _check_number("max_rounds", max_rounds, 0, integer=True, allow_none=True)
        self.max_labels, self.max_rounds = max_labels, max_rounds

    def check(self, history: list[dict]) -> str | None:
        if not history:
            return None
        last = history[-1]
        if self.max_labels is not None and last["labeled"] >= self.max_labels:
            return f"budget: {last['labeled']} labels (max {self.max_labels})"
        if self.max_rounds is not None and last["round"] >= self.max_rounds:
            return f"budget: {last['round']} rounds (max {self.max_rounds})"
        return None


class PlateauRule(StoppingRule):
    """Stop when the last `patience` rounds did not beat the earlier best `metric` by more than `min_delta`."""

    name = "plateau"

    def __init__(self, patience: int = 3, min_delta: float = 0.005, metric: str = "accuracy"):
        _check_number("patience", patience, 1, integer=True)
        _check_number("min_delta", min_delta, 0)
        self.patience, self.min_delta, self.metric = patience, float(min_delta), metric

    def check(self, history: list[dict]) -> str | None:
        scores = [h.get(self.metric) for h in history]
        scores = [s for s in scores if s is not None]
        if len(scores) <= self.patience:
            return None
        before = max(scores[: -self.patience])
        recent = max(scores[-self.patience:])
        if recent - before <= self.min_delta:  # Keras' EarlyStopping convention: a gain must exceed min_delta
            return (f"plateau: {self.metric} gained {recent - before:+.4f} (<= {self.min_delta}) "
                    f"over the last {self.patience} rounds")
        return None


class StabilizingPredictions(StoppingRule):
    """Stop when kappa between consecutive rounds' stop-set predictions >= threshold for `window` rounds."""

    name = "stabilizing"

    def __init__(self, threshold: float = 0.99, window: int = 3):
        _check_number("threshold", threshold, -1)
        if threshold > 1:
            raise UsageError(f"threshold must be <= 1, got {threshold!r}")
        _check_number("window", window, 1, integer=True)
        self.threshold, self.window = float(threshold), window

    def check(self, history: list[dict]) -> str | None:
        kappas = [h.get("kappa_vs_prev") for h in history[-self.window:]]
        if len(kappas) < self.window or any(k is None or k < self.threshold for k in kappas):
            return None
        return (f"stabilizing predictions: kappa >= {self.threshold} on the stop set "
                f"for {self.window} rounds (last {kappas[-1]:.4f})")


def first_reason(rules: Sequence[StoppingRule], history: list[dict]) -> str | None:
    """The first rule that fires on this history, as its reason; None if none does."""
    for rule in rules:
        reason = rule.check(history)
        if reason:
            return reason
    return None
