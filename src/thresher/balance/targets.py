"""How many rows each class gets, and which rows give them, on plain arrays of
class codes or labels: the target counts of each strategy, the over/under-
sampled row positions with their copy numbers, and the diverse (k-center)
choice of the rows a cut class keeps. The `balance` step that applies this to a
Dataset, and the writing of its output, is `thresher.balance.resample`.

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
from typing import Any

import numpy as np

from thresher.core.rng import make_rng
from thresher.errors import UsageError
from thresher.sampling._common import check_choice, srs_within_groups

STRATEGIES = ("oversample", "undersample", "hybrid", "weights")


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
        positions = per_class_codes({str(k): v for k, v in per_class.items()}, names, "labels")
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


def per_class_codes(per_class: dict, labels: list[str], field: str) -> dict[int, int]:
    """{class label: n} -> {class position: n}; unknown classes are an error naming them."""
    position = {label: i for i, label in enumerate(labels)}
    unknown = [str(c) for c in per_class if str(c) not in position]
    if unknown:
        shown = ", ".join(labels[:20]) + (f", ... ({len(labels)} in all)" if len(labels) > 20 else "")
        raise UsageError(f"per-class: unknown class {', '.join(map(repr, unknown))} in field '{field}'; "
                         f"classes are: {shown}")
    return {position[str(c)]: int(n) for c, n in per_class.items()}
