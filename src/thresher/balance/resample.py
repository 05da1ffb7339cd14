"""The `balance` step: repair the class imbalance of a Dataset's field by
random over-sampling, (diverse) under-sampling, hybrid, or class weights
instead of copies; check its parameters, return a Selection with the
before/after distribution, and write the balanced rows with their `_weight` or
`_source_id` / `_copy` columns. The counts and row choices on plain label
arrays are `thresher.balance.targets` (re-exported here).
"""
from __future__ import annotations

import numbers
from dataclasses import dataclass
from typing import Any

import numpy as np

from thresher.balance.distribution import distribution_table, imbalance_ratio
from thresher.balance.targets import (STRATEGIES, diverse_keep, encode_labels, hybrid_target,  # noqa: F401
                                      per_class_codes, resample, resample_indices, target_counts)
from thresher.balance.weights import weights_from_counts
from thresher.core.budget import Budget
from thresher.core.selection import Selection
from thresher.data.dataset import Dataset
from thresher.errors import UsageError
from thresher.sampling._common import Design, check_choice, check_number, check_random_state
from thresher.sampling.strata import strata

HYBRID_TARGETS = ("median", "mean")


# -- the step --------------------------------------------------------------------
@dataclass
class _Classes:
    codes: np.ndarray
    labels: list[str]
    counts: np.ndarray


class Balance(Design):
    """Balance the classes of a field by over-/under-sampling or class weights.

    Parameters
    ----------
    by: field (or list of fields, giving "a|b" cells) holding each row's class.
    strategy: "oversample" | "undersample" | "hybrid" | "weights".
    target_ratio: minority/majority ratio to reach, in (0, 1] (default 1).
    per_class: {class: rows} exact counts for listed classes (others kept).
    target: hybrid only: common class size, "median" (default), "mean" or an int.
    power: weights only: `w_c = (N / (C * N_c)) ** power`; 1 is scikit-learn's
        "balanced", 0.5 a smoothed middle.
    diverse: undersample/hybrid: keep the most spread-out rows of a cut class
        (greedy k-center on `embedding`) instead of a random sample.
    embedding: the embedding feature used by `diverse`.
    random_state: seed for the random draws.

    The Selection has the output rows (pool order, repeats for copies), labels
    {"class", "copy"}, and the before/after table in `strata` and in
    `diagnostics["distribution"]`. Resampled rows carry weight 1 and pi NaN
    (the balanced rows are meant to be trained on as they are); the weights
    strategy keeps every row (pi 1) with its class weight.
    """

    method = "balance"
    needs_budget = False

    def __init__(self, by: str | list[str], strategy: str = "oversample", target_ratio: float | None = None,
                 per_class: dict[str, int] | None = None, target: int | str | None = None, power: float = 1.0,
                 diverse: bool = False, embedding: str = "embedding",
                 random_state: int | np.random.Generator | None = None):
        self.by = by
        self.strategy = strategy
        self.target_ratio = target_ratio
        self.per_class = per_class
        self.target = target
        self.power = power
        self.diverse = diverse
        self.embedding = embedding
        self.random_state = random_state
        self._validate()

    def _validate(self) -> None:
        fields = [self.by] if isinstance(self.by, str) else self.by
        if not isinstance(fields, (list, tuple)) or not fields or not all(isinstance(f, str) and f for f in fields):
            raise UsageError(f"by must be a field name or a list of field names, got {self.by!r}")
        check_choice("strategy", self.strategy, STRATEGIES)
        check_number("target_ratio", self.target_ratio, 0.0, 1.0, low_open=True, allow_none=True)
        check_number("power", self.power, 0.0, 1.0)
        check_random_state(self.random_state)
        resampling = self.strategy != "weights"
        if self.target_ratio is not None and self.per_class is not None:
            raise UsageError("give either target_ratio (--target-ratio) or per_class (--per-class), not both")
        if not resampling and (self.target_ratio is not None or self.per_class is not None or self.diverse):
            raise UsageError("strategy 'weights' keeps every row: target_ratio, per_class and diverse don't apply "
                             "(use power to soften the weights)")
        if resampling and self.power != 1.0:
            raise UsageError("power only applies to strategy 'weights'")
        if self.diverse and self.strategy == "oversample":
            raise UsageError("diverse picks which rows to keep when cutting classes: use it with undersample or "
                             "hybrid")
        if self.target is not None and self.strategy != "hybrid":
            raise UsageError("target (the common class size) only applies to strategy 'hybrid'")
        _check_target(self.target)
        _check_per_class(self.per_class)

    @property
    def fields(self) -> list[str]:
        return [self.by] if isinstance(self.by, str) else list(self.by)

    @property
    def requires(self) -> list[str]:
        return [self.embedding] if self.diverse else []

    def classes(self, ds: Dataset) -> _Classes:
        cells = strata(ds, self.fields)  # tuple keys: null and "a|b" values cannot collide
        codes, labels = cells.codes, cells.labels
        return _Classes(codes, labels, np.bincount(codes, minlength=len(labels)))

    def targets(self, classes: _Classes) -> np.ndarray:
        """Rows per class after balancing."""
        per_class = None
        if self.per_class is not None:
            per_class = per_class_codes(self.per_class, classes.labels, "|".join(self.fields))
        return target_counts(classes.counts, self.strategy, target_ratio=self.target_ratio,
                             per_class=per_class, target=self.target)

    def select(self, ds: Dataset, budget: Budget | int | None = None,
               features: dict[str, np.ndarray] | None = None) -> Selection:
        """Balance `ds`; the output size follows from the strategy, so no budget is taken."""
        if budget is not None:
            raise UsageError("balance takes no budget (n / fraction / tokens): the strategy sets the output size")
        classes = self.classes(ds)
        if self.strategy == "weights":
            return self._weighted(ds, classes)
        targets = self.targets(classes)
        rng = self._rng()
        keep = None
        if self.diverse and (targets < classes.counts).any():
            keep = diverse_keep(classes.codes, targets, self._embeddings(ds, features), rng)
        indices, copy = resample_indices(classes.codes, targets, rng, keep=keep)
        nan = np.full(len(indices), np.nan)
        return self._selection(ds, classes, indices, copy, nan, np.ones(len(indices)), targets,
                               np.ones(len(targets)))

    def _weighted(self, ds: Dataset, classes: _Classes) -> Selection:
        w = weights_from_counts(classes.counts, self.power) if len(classes.counts) else np.empty(0)
        n = len(ds)
        return self._selection(ds, classes, np.arange(n), np.zeros(n, dtype=np.int64), np.ones(n),
                               w[classes.codes], classes.counts, w)

    def _embeddings(self, ds: Dataset, features: dict[str, np.ndarray] | None) -> np.ndarray:
        if features and self.embedding in features:
            return np.asarray(features[self.embedding])
        from thresher.features.columns import load_features

        return load_features(ds, [self.embedding])[self.embedding]

    def _selection(self, ds: Dataset, classes: _Classes, indices: np.ndarray, copy: np.ndarray, pi: np.ndarray,
                   weights: np.ndarray, after: np.ndarray, class_w: np.ndarray) -> Selection:
        table = distribution_table(classes.labels, classes.counts, after, class_w)
        label_of = np.asarray(classes.labels, dtype=object)
        diagnostics = {
            "by": "|".join(self.fields), "strategy": self.strategy, "classes": len(classes.labels),
            "rows_before": len(ds), "rows_after": int(len(indices)), "copies": int(np.count_nonzero(copy)),
            "dropped": len(ds) - _distinct_sorted(indices),
            "imbalance_before": imbalance_ratio(classes.counts),
            "imbalance_after": imbalance_ratio(after, class_w),
            "distribution": table,
        }
        return Selection(indices=indices, pi=pi, weights=weights, method=self.method, params=self.get_params(),
                         seed=self._seed(), pool_size=len(ds), strata=table, diagnostics=diagnostics,
                         labels={"class": label_of[classes.codes[indices]], "copy": copy})


def _distinct_sorted(indices: np.ndarray) -> int:
    return int(np.count_nonzero(np.diff(indices))) + 1 if len(indices) else 0


def balance(ds: Dataset, by: str | list[str], strategy: str = "oversample", *, seed: int | None = 0,
            **params: Any) -> Selection:
    """Balance `ds` by the classes of `by`: `balance(ds, "category", "hybrid", target_ratio=0.5, seed=0)`."""
    return Balance(by, strategy, random_state=seed, **params).select(ds)


# -- parameter checks --------------------------------------------------------------
def _check_target(target: Any) -> None:
    if target is None or target in HYBRID_TARGETS:
        return
    if isinstance(target, bool) or not isinstance(target, numbers.Integral) or target < 1:
        raise UsageError(f"target must be 'median', 'mean' or a row count >= 1, got {target!r}")


def _check_per_class(per_class: Any) -> None:
    if per_class is None:
        return
    if not isinstance(per_class, dict) or not per_class:
        raise UsageError(f"per_class must be a non-empty mapping {{class: rows}}, got {per_class!r}")
    for cls, n in per_class.items():
        if isinstance(n, bool) or not isinstance(n, numbers.Integral) or n < 0:
            raise UsageError(f"per_class: class {cls!r} needs a row count >= 0, got {n!r}")


# -- writing -------------------------------------------------------------------------
def output_columns(pool: Dataset, selection: Selection, ids: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """Columns appended to the written rows: `_weight` for the weights strategy;
    `_source_id` (the id of the row copied; a row's own id for originals) and
    `_copy` (0 original, k >= 1 the k-th copy) when the output holds copies.
    `ids`: the ids of the selected rows, when already known."""
    if selection.diagnostics.get("strategy") == "weights":
        return {"_weight": selection.weights}
    copy = selection.labels.get("copy")
    if copy is None or not np.any(copy):
        return {}
    ids = _selected_ids(pool, selection.indices)[1] if ids is None else ids
    return {"_source_id": ids, "_copy": np.asarray(copy, dtype=np.int64)}


def _selected_ids(pool: Dataset, indices: np.ndarray) -> tuple[Dataset, np.ndarray]:
    """Ids of the selected rows, each distinct row's id derived once (copies repeat it), and
    a view of `pool` that answers `ids_of` for those rows without deriving them again."""
    if pool._ids is not None:  # an id column: a plain take
        return pool, pool.ids_of(indices)
    order = np.argsort(indices, kind="stable")
    run = np.r_[True, indices[order][1:] != indices[order][:-1]] if len(indices) else np.empty(0, dtype=bool)
    distinct = indices[order][run]
    known = pool.ids_of(distinct)
    ids = np.empty(len(indices), dtype=object)
    ids[order] = np.repeat(known, np.diff(np.r_[np.flatnonzero(run), len(indices)]))
    column = np.full(len(pool), None, dtype=object)
    column[distinct] = known
    import pyarrow as pa

    return Dataset(pool.table, pool.source, ids=pa.array(column, pa.string())), ids


def write_balance(pool: Dataset, selection: Selection, out, *, rejects: list | None = None,
                  out_format: str | None = None, overwrite: bool = False, extra: dict | None = None):
    """Write a balanced subset through `thresher.data.output.write_selection`, with the
    `output_columns` appended to every row."""
    from thresher.data.output import write_selection

    id_pool, ids = _selected_ids(pool, selection.indices)
    return write_selection(id_pool, selection, out, command="balance", rejects=rejects, out_format=out_format,
                           overwrite=overwrite, weight_columns=False, extra=extra,
                           extra_columns=output_columns(pool, selection, ids))
