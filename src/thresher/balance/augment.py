"""Augment a pool with EDA: pick the rows (all, or thin categories), edit the
prompt and/or response fields with `thresher.balance.eda`, drop augmented rows
that duplicate the pool (exactly, or near with `drop_near_dups`), and report
what was requested, made and dropped, per operation and category. Putting the
rows back in the input's own format with their provenance columns, and writing
them with a manifest, is `thresher.balance.augment_rows` (re-exported here).
"""
from __future__ import annotations

import json
from typing import Any, Mapping, Sequence

import numpy as np
import pyarrow as pa

from thresher.balance.augment_rows import (AugmentResult, assemble, build_rows, extract_texts,  # noqa: F401
                                           new_ids, text_slots, write_augmented)
from thresher.balance.eda import EDA, OPS
from thresher.data.dataset import MISSING_LABEL, Dataset
from thresher.errors import UsageError

FIELDS = ("prompt", "response", "both")


class Augmenter:
    """EDA over a pool's rows. Parameters as in `thresher augment`:

    field: "prompt", "response" or "both" (the texts edited).
    by / only_below: with `only_below=N`, only categories of `by` with fewer
        than N rows are augmented; with `by`, each row's label is protected.
    near_dup_threshold: an augmented row whose word-3-shingle Jaccard with a
        pool row other than its source reaches this is counted (and dropped
        with `drop_near_dups`). Exact (normalized) duplicates of a pool row
        are always dropped.
    only_new: output only the augmented rows.
    """

    def __init__(self, ops: Sequence[str] = OPS, alpha: float | Mapping[str, float] = 0.1, n_aug: int = 4,
                 field: str = "prompt", protect: Sequence[str] = (), by: str | None = None,
                 only_below: int | None = None, near_dup_threshold: float = 0.9, drop_near_dups: bool = False,
                 only_new: bool = False, seed: int | None = 0, wordnet=None):
        self.eda = EDA(ops=ops, alpha=alpha, n_aug=n_aug, protect=protect, wordnet=wordnet)
        if field not in FIELDS:
            raise UsageError(f"--field must be one of {', '.join(FIELDS)}, got {field!r}")
        if only_below is not None:
            if isinstance(only_below, bool) or not isinstance(only_below, (int, np.integer)) or only_below < 1:
                raise UsageError(f"--only-below must be a positive integer, got {only_below!r}")
            if not by:
                raise UsageError("--only-below needs --by FIELD (the categories to count)")
        if not isinstance(near_dup_threshold, (int, float)) or not 0 < near_dup_threshold <= 1:
            raise UsageError(f"--near-dup-threshold must be in (0, 1], got {near_dup_threshold!r}")
        self.field, self.by, self.only_below = field, by, only_below
        self.near_dup_threshold, self.drop_near_dups, self.only_new = float(near_dup_threshold), drop_near_dups, only_new
        self.seed = 0 if seed is None else int(seed)

    def params(self) -> dict[str, Any]:
        return {"ops": list(self.eda.ops), "alpha": self.eda.alpha, "n_aug": self.eda.n_aug, "field": self.field,
                "protect": list(self.eda.protect), "by": self.by, "only_below": self.only_below,
                "near_dup_threshold": self.near_dup_threshold, "drop_near_dups": self.drop_near_dups,
                "only_new": self.only_new}

    # -- main -----------------------------------------------------------------
    def augment(self, ds: Dataset) -> AugmentResult:
        """Originals (unless only_new) followed by the kept augmented rows."""
        slots = text_slots(ds, self.field)
        rows, labels, codes, names = self._rows(ds)
        ids = np.asarray(ds.ids_of(rows), dtype=object).astype(str) if len(rows) else np.zeros(0, str)
        units, where = extract_texts(ds, slots, rows)
        src, texts, ops, short = [], [], [], []
        for r, key, u, lab in zip(rows.tolist(), ids.tolist(), units, labels):
            v = self.eda.augment_units(u, self.seed, key, lab)
            src += [r] * len(v.texts)
            texts += v.texts
            ops += v.ops
            if v.reason:
                short.append({"id": key, "generated": len(v.texts), "reason": v.reason})
        src = np.asarray(src, dtype=np.int64)
        aug_table, objs = build_rows(ds, slots, rows, where, src, texts)
        keep, dup_stats = self._dedup(ds, aug_table, src, ids, rows)
        aug_table = aug_table.filter(pa.array(keep))
        src = src[keep]
        ops = np.asarray(ops, dtype=object)[keep] if len(ops) else np.zeros(0, object)
        objs = [o for o, k in zip(objs, keep) if k] if objs is not None else None
        aug_table = new_ids(ds, aug_table, objs, src)
        aug_raw = None if objs is None else [json.dumps(o, ensure_ascii=False).encode("utf-8") for o in objs]
        report = self._report(ds, rows, src, ops, short, dup_stats, codes, names)
        return assemble(ds, aug_table, aug_raw, src, ops, self.only_new, report)

    def _rows(self, ds: Dataset):
        """Rows to augment, their labels (or None), category codes and names."""
        n = len(ds)
        if not self.by:
            return np.arange(n, dtype=np.int64), [None] * n, None, None
        codes, names = ds.categorical([self.by])
        counts = np.bincount(codes, minlength=len(names))
        eligible = counts < self.only_below if self.only_below else np.ones(len(names), bool)
        rows = np.flatnonzero(eligible[codes]).astype(np.int64)
        labels = [None if names[c] == MISSING_LABEL else names[c] for c in codes[rows].tolist()]
        return rows, labels, codes, names

    def _dedup(self, ds: Dataset, aug_table: pa.Table, src: np.ndarray, ids: np.ndarray, rows: np.ndarray):
        """Keep-mask over augmented rows and the duplicate counts."""
        from thresher.features.minhash import exact_hash

        stats = {"dropped_exact_pool_duplicates": 0, "dropped_duplicate_augmented": 0,
                 "near_duplicates_of_other_rows": 0, "dropped_near_duplicates": 0}
        if len(src) == 0:
            return np.zeros(0, bool), stats
        pool_text = _content(ds)
        aug_text = _content(Dataset(aug_table, ds.source))
        pool_h = np.asarray(exact_hash(pool_text).to_numpy(zero_copy_only=False), dtype=np.uint64)
        aug_h = np.asarray(exact_hash(aug_text).to_numpy(zero_copy_only=False), dtype=np.uint64)
        in_pool = np.isin(aug_h, pool_h)
        stats["dropped_exact_pool_duplicates"] = int(in_pool.sum())
        # Repeats among augmented rows: keep the first by (source id, variant), so
        # the choice does not depend on row order.
        id_of_row = dict(zip(rows.tolist(), ids.tolist()))
        src_ids = np.array([id_of_row[s] for s in src.tolist()], dtype=str)
        order = np.lexsort((np.arange(len(src)), src_ids))
        seen_first = np.zeros(len(src), bool)
        _, first = np.unique(aug_h[order], return_index=True)
        seen_first[order[first]] = True
        repeat = ~seen_first & ~in_pool
        stats["dropped_duplicate_augmented"] = int(repeat.sum())
        keep = ~in_pool & ~repeat
        near = self._near(pool_text, aug_text, src, keep)
        stats["near_duplicates_of_other_rows"] = int(near.sum())
        if self.drop_near_dups:
            stats["dropped_near_duplicates"] = int(near.sum())
            keep &= ~near
        return keep, stats

    def _near(self, pool_text: pa.Array, aug_text: pa.Array, src: np.ndarray, keep: np.ndarray) -> np.ndarray:
        """Augmented rows whose Jaccard with a pool row other than their source is >= threshold."""
        from thresher.features.minhash import estimate_jaccard, lsh_candidates, minhash_signatures

        n = len(pool_text)
        sig = minhash_signatures(pa.concat_arrays([pool_text, aug_text]), num_perm=128, shingle_size=3, seed=1)
        pairs = lsh_candidates(sig, self.near_dup_threshold)
        cross = (pairs[:, 0] < n) & (pairs[:, 1] >= n)
        pairs = pairs[cross]
        aug_row = pairs[:, 1] - n
        pairs = pairs[(pairs[:, 0] != src[aug_row]) & keep[aug_row]]
        hit = pairs[estimate_jaccard(sig, pairs) >= self.near_dup_threshold]
        out = np.zeros(len(aug_text), bool)
        out[hit[:, 1] - n] = True
        return out

    def _report(self, ds, rows, src, ops, short, dup_stats, codes, names) -> dict[str, Any]:
        requested = len(rows) * self.eda.n_aug
        generated = len(src) + sum(dup_stats[k] for k in ("dropped_exact_pool_duplicates",
                                                           "dropped_duplicate_augmented", "dropped_near_duplicates"))
        report: dict[str, Any] = {
            "rows_in": len(ds), "rows_augmented": len(rows), "requested": requested, "generated": generated,
            **dup_stats, "augmented_rows": len(src),
            "acceptance": round(len(src) / requested, 6) if requested else None,
            "ops": {op: int(np.count_nonzero(ops == op)) for op in self.eda.ops},
            "short_rows": len(short), "reasons": _count_reasons(short), "short": short,
        }
        if codes is not None:
            before = np.bincount(codes, minlength=len(names))
            added = np.bincount(codes[src], minlength=len(names)) if len(src) else np.zeros(len(names), np.int64)
            report["categories"] = [{"category": c, "before": int(b), "augmented": int(a),
                                     "after": int(a) + (0 if self.only_new else int(b))}
                                    for c, b, a in zip(names, before.tolist(), added.tolist())]
        return report


def augment(ds: Dataset, *, seed: int | None = 0, **params) -> AugmentResult:
    """`thresher.balance.augment.augment(ds, n_aug=4, field="both", by="category", only_below=50, seed=0)`."""
    return Augmenter(seed=seed, **params).augment(ds)


def _content(ds: Dataset) -> pa.Array:
    """prompt + newline + response per row (what duplicates are judged on)."""
    import pyarrow.compute as pc

    prompt, response = ds.column("prompt"), ds.column("response")
    joined = pc.binary_join_element_wise(prompt, response, "\n")
    return joined.combine_chunks() if isinstance(joined, pa.ChunkedArray) else joined


def _count_reasons(short: list[dict]) -> dict[str, int]:
    """How many rows came up short, by the kind of reason (numbers dropped)."""
    import re

    out: dict[str, int] = {}
    for s in short:
        kind = re.sub(r"\d+", "N", s["reason"])
        out[kind] = out.get(kind, 0) + 1
    return dict(sorted(out.items(), key=lambda kv: (-kv[1], kv[0])))

