"""`dedup`: keep one row per duplicate group (exact hash, MinHash cluster, or embedding cosine),
or, with `against`, remove the pool rows that overlap an eval set (decontamination).

`fields` picks the text compared: prompt, response, instruction, input, output
or any column (several are joined); the default is the prompt and response.

Decontamination (`against=EVAL_FILE`): a pool row is removed when its text
(default fields: the prompt, where benchmark questions leak) equals an eval
row's after normalization (lower case, no punctuation, collapsed spaces), or,
for kind="near", when MinHash (word `shingle_size`-grams, default 3; 128
permutations; LSH banding with 99% recall at the threshold) estimates its
Jaccard similarity to some eval row at >= `jaccard` (default 0.5: one word
changed in a 15-word question still scores ~0.63, well clear of the
estimate's noise). Near matching only compares texts of >= 8 words; shorter
ones match exactly or not at all. Only pool x eval pairs are formed. The
counts (exact, near, eval rows hit) go to the step's diagnostics in the manifest.

Semantic dedup follows SemDeDup: inside each k-means cluster, rows whose
embeddings have cosine >= threshold are linked; each connected component
keeps one row. Comparing only within clusters keeps the cost near
sum(cluster_size^2) instead of N^2.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from thresher.core.arrays import dense_codes
from thresher.errors import UsageError
from thresher.selection.base import deterministic

KINDS = ("exact", "near", "semantic")
KEEPS = ("first", "longest", "highest")
_BLOCK = 2048


class DedupSelector:
    name = "dedup"
    needs_budget = False

    def __init__(self, kind: str = "near", keep: str = "first", score: str | None = None, threshold: float = 0.95,
                 fields: str | list[str] | None = None, against: Any = None, jaccard: float | None = None,
                 shingle_size: int = 3):
        from thresher.features.fields import parse_fields

        if kind not in KINDS:
            raise UsageError(f"dedup: kind must be one of {', '.join(KINDS)}, got {kind!r}")
        if keep not in KEEPS:
            raise UsageError(f"dedup: keep must be one of {', '.join(KEEPS)}, got {keep!r}")
        if keep == "highest" and not score:
            raise UsageError("dedup: keep=highest needs score=<feature or field>")
        if not 0 < float(threshold) <= 1:
            raise UsageError(f"dedup: threshold must be in (0, 1], got {threshold}")
        if jaccard is not None and (isinstance(jaccard, bool) or not isinstance(jaccard, (int, float))
                                    or not 0 < jaccard <= 1):
            raise UsageError(f"dedup: jaccard must be in (0, 1], got {jaccard!r}")
        if not isinstance(shingle_size, int) or isinstance(shingle_size, bool) or not 1 <= shingle_size <= 64:
            raise UsageError(f"dedup: shingle_size must be an integer in [1, 64], got {shingle_size!r}")
        if against is not None and kind == "semantic":
            raise UsageError("dedup: against works with kind exact or near (exact + MinHash), not semantic")
        self.kind, self.keep, self.score, self.threshold = kind, keep, score, float(threshold)
        self.fields = None if fields is None else parse_fields(fields)
        self.against, self.jaccard, self.shingle_size = against, jaccard, shingle_size

    @property
    def requires(self) -> list:
        if self.against is not None:
            return []
        if self.fields is None:
            need: list = {"exact": ["exact_hash"], "near": ["dup_cluster"],
                          "semantic": ["embedding", "cluster"]}[self.kind]
        else:
            need = self._field_featurizers()
        if self.keep == "longest":
            need.append("chars")
        if self.keep == "highest":
            need.append(self.score)
        return need

    def _field_featurizers(self) -> list:
        from thresher.features.fields import OnFields

        near = {"field": "response"} if self.jaccard is None else {"field": "response", "threshold": self.jaccard}
        return {"exact": [OnFields("exact_dup", self.fields, {"field": "response"})],
                "near": [OnFields("near_dup", self.fields, near)],
                "semantic": [OnFields("embed_static", self.fields, {"field": "response"}), "cluster"]}[self.kind]

    def select(self, ds, budget=None, features: dict[str, np.ndarray] | None = None, seed: int | None = None):
        if self.against is not None:
            return self._decontaminate(ds, seed)
        features = features or {}
        n = len(ds)
        groups = self._groups(features, n)
        kept = keep_one_per_group(groups, self._priority(features, n))
        keep = np.zeros(n, bool)
        keep[kept] = True
        dropped = np.flatnonzero(~keep)
        reason = {"exact": "exact duplicate", "near": "near duplicate (MinHash)",
                  "semantic": f"semantic duplicate (cosine >= {self.threshold})"}[self.kind]
        diagnostics = {"groups": int(len(kept)), "duplicates_removed": int(len(dropped)),
                       "largest_group": int(np.bincount(groups).max()) if n else 0}
        return deterministic(kept, method="dedup", params=self.params(), seed=seed, pool_size=n,
                             diagnostics=diagnostics, removed={reason: dropped} if len(dropped) else {})

    def _groups(self, features: dict[str, np.ndarray], n: int) -> np.ndarray:
        if self.kind == "exact":
            return dense_codes(features["exact_hash"])
        if self.kind == "near":
            return dense_codes(features["dup_cluster"])
        return semantic_groups(features["embedding"], np.asarray(features["cluster"]), self.threshold)

    def _priority(self, features: dict[str, np.ndarray], n: int) -> np.ndarray:
        """Higher is kept first; ties go to the earlier row."""
        if self.keep == "first":
            return np.zeros(n)
        key = features["chars"] if self.keep == "longest" else features[self.score]
        return np.nan_to_num(np.asarray(key, dtype=np.float64), nan=-np.inf)

    def _decontaminate(self, ds, seed: int | None):
        from thresher.selection.decontaminate import overlap_with

        fields = self.fields if self.fields is not None else "prompt"
        jaccard = 0.5 if self.jaccard is None else self.jaccard
        hits = overlap_with(ds, self.against, fields, near=self.kind == "near", jaccard=jaccard,
                            shingle_size=self.shingle_size)
        kept = np.flatnonzero(~(hits.exact | hits.near))
        removed = {f"overlaps the eval set: exact ({hits.fields})": np.flatnonzero(hits.exact),
                   f"overlaps the eval set: near, Jaccard >= {jaccard:g} ({hits.fields})": np.flatnonzero(hits.near)}
        return deterministic(kept, method="dedup", params=self.params(), seed=seed, pool_size=len(ds),
                             diagnostics=hits.diagnostics(), removed={k: v for k, v in removed.items() if len(v)})

    def params(self) -> dict[str, Any]:
        out = {"kind": self.kind, "keep": self.keep, "score": self.score, "threshold": self.threshold}
        if self.fields is not None:
            out["fields"] = self.fields
        if self.against is not None:
            out.update(against=str(self.against) if isinstance(self.against, (str, Path)) else
                       type(self.against).__name__, jaccard=self.jaccard, shingle_size=self.shingle_size)
        return out


def keep_one_per_group(groups: np.ndarray, priority: np.ndarray) -> np.ndarray:
    """Row index kept for each group (highest priority, then earliest), in pool order."""
    rows = np.arange(len(groups))
    order = np.lexsort((rows, -priority, groups))
    g = groups[order]
    first = np.r_[True, g[1:] != g[:-1]]
    return np.sort(order[first])


def semantic_groups(embedding: np.ndarray, clusters: np.ndarray, threshold: float) -> np.ndarray:
    """Connected components of the graph cos(i, j) >= threshold, edges only within a cluster."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    n = len(embedding)
    src, dst = [], []
    order = np.argsort(clusters, kind="stable")
    bounds = np.flatnonzero(np.r_[True, clusters[order][1:] != clusters[order][:-1], True])
    for start, stop in zip(bounds[:-1], bounds[1:]):
        members = order[start:stop]
        if len(members) < 2:
            continue
        vecs = embedding[members]
        for b in range(0, len(members), _BLOCK):
            sims = vecs[b:b + _BLOCK] @ vecs.T  # a block against the cluster, never A @ A.T whole
            i, j = np.nonzero(sims >= threshold)
            upper = (i + b) < j
            src.append(members[i[upper] + b])
            dst.append(members[j[upper]])
    if not src:
        return np.arange(n)
    src_arr, dst_arr = np.concatenate(src), np.concatenate(dst)
    graph = coo_matrix((np.ones(len(src_arr), dtype=np.int8), (src_arr, dst_arr)), shape=(n, n))
    return connected_components(graph, directed=False)[1]
