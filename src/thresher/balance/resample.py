"""Repair class imbalance: random over-sampling, (diverse) under-sampling,
hybrid, or class weights instead of copies.

Target counts (C classes of sizes N_c, majority N_max, minority N_min; R is
`target_ratio` in (0, 1], default 1):

- oversample: every class below ceil(R * N_max) is raised to exactly that
  many rows; larger classes are kept whole. Minority/majority after >= R.
- undersample: every class above floor(N_min / R) is cut to exactly that
  many rows; smaller classes are kept whole. Minority/majority after >= R.
- hybrid: with a target T (median class size by default), classes above T
  are cut to T and classes below ceil(R * T) are raised to it; classes in
  between are kept. With R = 1 every class ends with exactly T rows.
- per_class {class: n}: the listed classes get exactly n rows, the others
  are kept whole (oversample may only raise, undersample only cut).
- weights: no rows change; each row gets `_weight = (N / (C * N_c)) ** power`.

Under-sampling draws a simple random sample of each cut class (every row
kept with probability n_c / N_c), or with `diverse` the most spread-out rows
by greedy k-center on the embeddings. Over-sampling keeps every original
once and adds copies so that each row of a raised class appears either
floor(n_c / N_c) or ceil(n_c / N_c) times (the remainder goes to a simple
random sample of the class): the exact count with the least duplication
spread. Copies are marked by `copy` >= 1 (0 for the original).
"""
from __future__ import annotations

import math
import numbers
from dataclasses import dataclass
from typing import Any

import numpy as np

from thresher.balance.distribution import distribution_table, imbalance_ratio
from thresher.balance.weights import weights_from_counts
from thresher.core.budget import Budget
from thresher.core.rng import make_rng
from thresher.core.selection import Selection
from thresher.data.dataset import Dataset
from thresher.errors import UsageError
from thresher.sampling._common import Design, check_choice, check_number, check_random_state, srs_within_groups
from thresher.sampling.strata import strata

STRATEGIES = ("oversample", "undersample", "hybrid", "weights")
HYBRID_TARGETS = ("median", "mean")


# -- target counts -------------------------------------------------------------
def target_counts(counts: np.ndarray, strategy: str, *, target_ratio: float | None = None,
                  per_class: dict[int, int] | None = None, target: int | str | None = None) -> np.ndarray:
    """Rows each class should have after balancing (see the module docstring).

    `per_class` maps class *positions* (into `counts`) to row counts.
    """
    check_choice("strategy", strategy, STRATEGIES)
    counts = np.asarray(counts, dtype=np.int64)
    if strategy == "weights" or len(counts) == 0:
        return counts.copy()
    if per_class is not None:
        return _per_class_targets(counts, strategy, per_class)
    ratio = 1.0 if target_ratio is None else float(target_ratio)
    if strategy == "oversample":
        return np.maximum(counts, _ceil(ratio * counts.max()))
    if strategy == "undersample":
        return np.minimum(counts, _floor(counts.min() / ratio))
    top = hybrid_target(counts, target)
    return np.clip(counts, min(_ceil(ratio * top), top), top)


def hybrid_target(counts: np.ndarray, target: int | str | None = None) -> int:
    """The hybrid strategy's common class size: the median or mean class size (rounded half up), or an int."""
    if target is None or target == "median":
        value = float(np.median(counts))
    elif target == "mean":
        value = float(np.mean(counts))
    else:
        return int(target)
    return max(1, int(math.floor(value + 0.5)))


def _per_class_targets(counts: np.ndarray, strategy: str, per_class: dict[int, int]) -> np.ndarray:
    out = counts.copy()
    for code, n in per_class.items():
        out[code] = n
    if strategy == "oversample" and (out < counts).any():
        raise UsageError("oversample can only raise classes; a --per-class count below the class size "
                         "needs --strategy undersample or hybrid")
    if strategy == "undersample" and (out > counts).any():
        raise UsageError("undersample can only cut classes; a --per-class count above the class size "
                         "needs --strategy oversample or hybrid")
    return out


def _ceil(x: float) -> int:
    return int(math.ceil(round(x, 9)))  # round first: 0.1 * 30 must give 3, not 4


def _floor(x: float) -> int:
    return int(math.floor(round(x, 9)))


# -- resampling ------------------------------------------------------------------
def resample_indices(codes: np.ndarray, targets: np.ndarray, seed: int | np.random.Generator | None = None,
                     keep: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Row positions (pool order, copies next to their original) giving class c exactly
    `targets[c]` rows, and each output row's copy number (0 = the original).

    codes: class position of each row (int, 0..C-1). `keep`: optional pool rows
    chosen for the cut classes (e.g. by k-center); random otherwise.
    """
    codes = np.asarray(codes, dtype=np.int64)
    targets = np.asarray(targets, dtype=np.int64)
    counts = np.bincount(codes, minlength=len(targets))
    if len(counts) != len(targets):
        raise UsageError(f"codes reach class {len(counts) - 1} but only {len(targets)} targets were given")
    if (targets < 0).any():
        raise UsageError("target counts must be >= 0")
    rng = make_rng(seed)
    cut = targets < counts
    whole, rest = np.divmod(np.maximum(targets - counts, 0), np.maximum(counts, 1))
    # One draw serves both directions (a class is either cut or raised): the rows
    # a cut class keeps, or the rows of a raised class that get one copy more.
    draw = np.where(cut, 0 if keep is not None else targets, rest)
    chosen = srs_within_groups(codes, counts, draw, rng) if draw.any() else np.empty(0, dtype=np.int64)
    if keep is not None:
        keep = np.asarray(keep, dtype=np.int64)
        chosen = np.concatenate([chosen, keep[cut[codes[keep]]]])
    if not (targets > counts).any():
        mask = (~cut)[codes]
        mask[chosen] = True
        indices = np.flatnonzero(mask)
        return indices, np.zeros(len(indices), dtype=np.int64)
    mult = np.where(cut, 0, 1 + whole)[codes]
    mult[chosen] += 1
    indices = np.repeat(np.arange(len(codes), dtype=np.int64), mult)
    first = np.cumsum(mult) - mult
    copy = np.arange(len(indices), dtype=np.int64) - np.repeat(first, mult)
    return indices, copy


def encode_labels(labels: Any) -> tuple[np.ndarray, np.ndarray]:
    """(codes, classes): each label's position in the sorted distinct labels (one hash pass)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    arr = labels if isinstance(labels, (pa.Array, pa.ChunkedArray)) else pa.array(np.asarray(labels))
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    if arr.null_count:
        raise UsageError(f"labels hold {arr.null_count} missing values; fill or filter them first")
    encoded = arr if pa.types.is_dictionary(arr.type) else pc.dictionary_encode(arr)
    classes = encoded.dictionary.to_numpy(zero_copy_only=False)
    rank = np.empty(len(classes), dtype=np.int64)
    rank[np.argsort(classes, kind="stable")] = np.arange(len(classes))
    return rank[encoded.indices.to_numpy(zero_copy_only=False)], np.sort(classes)


def resample(labels: Any, strategy: str = "oversample", *, target_ratio: float | None = None,
             per_class: dict | None = None, target: int | str | None = None,
             seed: int | np.random.Generator | None = 0) -> tuple[np.ndarray, np.ndarray]:
    """Balance an array of labels: (row positions, copy numbers), as `resample_indices`.

    `resample(y, "undersample", target_ratio=0.5, seed=0)`; `per_class` maps labels to rows.
    """
    check_choice("strategy", strategy, STRATEGIES[:3])
    codes, classes = encode_labels(labels)
    counts = np.bincount(codes, minlength=len(classes))
    positions = None
    if per_class is not None:
        names = [str(c) for c in classes.tolist()]
        positions = _per_class_codes({str(k): v for k, v in per_class.items()}, names, "labels")
    targets = target_counts(counts, strategy, target_ratio=target_ratio, per_class=positions, target=target)
    return resample_indices(codes, targets, seed)


def diverse_keep(codes: np.ndarray, targets: np.ndarray, X: np.ndarray,
                 seed: int | np.random.Generator | None = None) -> np.ndarray:
    """Pool rows kept for classes cut below their size: the `targets[c]` most spread-out
    rows of each (greedy k-center, cosine); classes not cut are kept whole."""
    from thresher.selection.kcenter import kcenter_greedy

    codes = np.asarray(codes, dtype=np.int64)
    counts = np.bincount(codes, minlength=len(targets))
    rng = make_rng(seed)
    order = np.argsort(codes, kind="stable")
    starts = np.concatenate([[0], np.cumsum(counts)])
    kept = []
    for c in range(len(counts)):  # one k-center run per class, not per row
        rows = order[starts[c]:starts[c + 1]]
        k = int(min(targets[c], counts[c]))
        if k >= counts[c]:
            kept.append(rows)
        elif k > 0:
            picked, _ = kcenter_greedy(X[rows], k, random_state=rng)
            kept.append(rows[picked])
    return np.sort(np.concatenate(kept)) if kept else np.empty(0, dtype=np.int64)


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
            per_class = _per_class_codes(self.per_class, classes.labels, "|".join(self.fields))
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


def _per_class_codes(per_class: dict, labels: list[str], field: str) -> dict[int, int]:
    """{class label: n} -> {class position: n}; unknown classes are an error naming them."""
    position = {label: i for i, label in enumerate(labels)}
    unknown = [str(c) for c in per_class if str(c) not in position]
    if unknown:
        shown = ", ".join(labels[:20]) + (f", ... ({len(labels)} in all)" if len(labels) > 20 else "")
        raise UsageError(f"per-class: unknown class {', '.join(map(repr, unknown))} in field '{field}'; "
                         f"classes are: {shown}")
    return {position[str(c)]: int(n) for c, n in per_class.items()}


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
