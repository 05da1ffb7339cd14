"""`rds`: representation-based data selection toward a target / eval set
(RDS+, Ivison et al. 2025, "Large-Scale Data Selection for Instruction
Tuning", arXiv 2503.01807 — the selector that held up best at scale there).

Pool and target rows are embedded with the pooled final hidden states of a
causal LM (`features.lm_embed`: the bundled SmolLM2 by default), and picked
round-robin over the target rows: in each round every target row, in order,
takes its most similar pool row (cosine) not taken yet, until the budget is
spent. Unlike ranking by the best similarity to any target row, round-robin
cannot spend the whole budget near a few target rows.

The round-robin is exact (the same picks as the one-at-a-time loop) but runs
a round's target rows as one numpy step: every row proposes its best free
candidate, the proposals up to the first one an earlier row already made are
accepted together, the rest propose again. Candidates come from each target
row's top-m pool rows (one blocked matrix product); m doubles and the walk
restarts in the rare case a target row runs out of them.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np

from thresher.core.budget import Budget
from thresher.core.selection import Selection
from thresher.data.dataset import Dataset
from thresher.errors import UsageError
from thresher.sampling._common import Design, check_field_name, check_random_state
from thresher.selection.base import budget_limits, deterministic, embedding_matrix, max_keepable

_BLOCK_CELLS = 1 << 24  # (target rows x pool rows) similarities per product: 64 MB of float32


class RDSSelector(Design):
    """Round-robin nearest pool rows to each target row, on LM embeddings.

    Parameters
    ----------
    target: the target / eval examples: a file thresher reads, a Dataset or a
        list of texts (embedded like the pool). Or give `target_embeddings`.
    target_embeddings: (T, d) embeddings of the target rows, instead of `target`.
    model: the LM (None: the bundled SmolLM2; or a local model folder).
    fields: the text embedded, pool and target alike ("both": prompt + response).
    pooling: "mean" or "weighted" (position-weighted mean, RDS+).
    max_length: tokens embedded per row.
    embedding: the pool embedding column; the default "lm_embedding" is
        computed (and cached) with the settings above; any other column
        (e.g. "embedding", the static embedder) is used as given, and then
        `target_embeddings` must come from the same embedder.
    """

    name = "rds"
    method = "rds"
    needs_budget = True

    def __init__(self, target: str | Path | Sequence[str] | Dataset | None = None,
                 target_embeddings: np.ndarray | None = None, model: str | None = None,
                 fields: str | list[str] = "both", pooling: str = "mean", max_length: int = 256,
                 embedding: str = "lm_embedding", random_state: int | np.random.Generator | None = None):
        from thresher.features.lm_embed import LMEmbed

        self.target = target
        self.target_embeddings = target_embeddings
        self.model = model
        self.fields = fields
        self.pooling = pooling
        self.max_length = max_length
        self.embedding = embedding
        self.random_state = random_state
        check_field_name("embedding", embedding)
        check_random_state(random_state)
        if target is None and target_embeddings is None:
            raise UsageError("rds needs a target: --target FILE (the eval set) or target_embeddings")
        if embedding != "lm_embedding" and target_embeddings is None:
            raise UsageError(f"rds with embedding={embedding!r} needs target_embeddings from the same embedder")
        if isinstance(target, (str, Path)) and not Path(target).exists():
            raise UsageError(f"rds: target file {target} does not exist")
        self._featurizer = LMEmbed(model, fields, pooling, max_length)

    @property
    def requires(self) -> list:
        return [self._featurizer if self.embedding == "lm_embedding" else self.embedding, "tokens"]

    def get_params(self) -> dict[str, Any]:
        params = super().get_params()
        params["target"] = self.target if isinstance(self.target, (str, type(None))) else \
            str(self.target) if isinstance(self.target, Path) else f"{type(self.target).__name__}"
        emb = self.target_embeddings
        params["target_embeddings"] = None if emb is None else f"array{tuple(np.shape(emb))}"
        return params

    def select(self, ds: Dataset, budget: int | Budget, features: dict[str, np.ndarray] | None = None) -> Selection:
        """Round-robin picks, in pick order."""
        pool = embedding_matrix(ds, features, self.embedding)
        target = self._target(pool.shape[1])
        max_rows, tokens, max_tokens = budget_limits(budget, ds, features)
        n = max_keepable(len(ds), max_rows, tokens, max_tokens)
        order = round_robin(pool, target, n)
        if max_tokens is not None:
            order = order[: int(np.searchsorted(np.cumsum(tokens[order]), max_tokens, side="right"))]
        best = _best_similarity(pool[order], target)
        diagnostics: dict[str, Any] = {
            "target_rows": len(target), "rounds": int(-(-len(order) // max(1, len(target)))),
            "similarity_selected": _quantiles(best), "embedding": self.embedding, "pooling": self.pooling}
        if max_tokens is not None:
            diagnostics["tokens_used"] = float(tokens[order].sum())
        rest = np.setdiff1d(np.arange(len(ds)), order)
        removed = {"not among the target rows' round-robin nearest": rest} if len(rest) else {}
        return deterministic(order, method=self.method, params=self.get_params(), seed=self._seed(),
                             pool_size=len(ds), diagnostics=diagnostics, removed=removed)

    def _target(self, dim: int) -> np.ndarray:
        if self.target_embeddings is not None:
            emb = np.asarray(self.target_embeddings, dtype=np.float32)
        else:
            emb = self._embed_target()
        if emb.ndim != 2 or emb.shape[1] != dim or len(emb) == 0:
            raise UsageError(f"target embeddings must have shape (rows >= 1, {dim}) to match the pool's; got {emb.shape}")
        return _unit(emb)

    def _embed_target(self) -> np.ndarray:
        import pyarrow as pa

        from thresher.features.fields import field_text, input_columns, resolve_fields
        from thresher.features.lm_embed import lm_embed

        if isinstance(self.target, (str, Path, Dataset)):
            ds = self.target if isinstance(self.target, Dataset) else _read(self.target)
            fields = resolve_fields(ds, self._featurizer.fields)
            batch = pa.table({c: ds.column(c) for c in input_columns(fields)})
            texts = field_text(batch, fields).to_pylist()
        else:
            texts = [str(t) for t in self.target]
        return lm_embed(texts, self.model, pooling=self.pooling, max_length=self.max_length)


def round_robin(pool: np.ndarray, target: np.ndarray, n: int) -> np.ndarray:
    """The first `n` picks of round-robin over target rows (each takes its most
    similar free pool row, in target order, round after round)."""
    pool, target = _unit(np.asarray(pool, np.float32)), _unit(np.asarray(target, np.float32))
    big_n, t = len(pool), len(target)
    n = min(int(n), big_n)
    if n == 0 or t == 0:
        return np.empty(0, dtype=np.int64)
    m = min(big_n, -(-n // t) + 16)
    while True:
        picks = _walk(top_candidates(pool, target, m), n, big_n)
        if picks is not None:
            return picks
        m = min(big_n, 2 * m)


def top_candidates(pool: np.ndarray, target: np.ndarray, m: int) -> np.ndarray:
    """(T, m) pool rows per target row, most similar first (ties: lower row first)."""
    big_n = len(pool)
    out = np.empty((len(target), m), dtype=np.int64)
    step = max(1, _BLOCK_CELLS // max(1, big_n))
    for s in range(0, len(target), step):
        sims = target[s:s + step] @ pool.T
        if m < big_n:
            part = np.sort(np.argpartition(-sims, m - 1, axis=1)[:, :m], axis=1)
        else:
            part = np.broadcast_to(np.arange(big_n), sims.shape)
        vals = np.take_along_axis(sims, part, axis=1)
        out[s:s + step] = np.take_along_axis(part, np.argsort(-vals, axis=1, kind="stable"), axis=1)
    return out


def _walk(cand: np.ndarray, n: int, big_n: int) -> np.ndarray | None:
    """Round-robin over candidate lists; None when a target row runs out of candidates."""
    t, m = cand.shape
    taken = np.zeros(big_n, dtype=bool)
    ptr = np.zeros(t, dtype=np.int64)
    out = np.empty(n, dtype=np.int64)
    k = 0
    while k < n:
        t0 = 0
        while t0 < t and k < n:
            rows = np.arange(t0, min(t, t0 + n - k))
            prop = _proposals(cand, ptr, rows, taken)
            if prop is None:
                return None if m < big_n else out[:k]
            _, first = np.unique(prop, return_index=True)
            repeat = np.ones(len(prop), dtype=bool)
            repeat[first] = False
            cut = int(np.argmax(repeat)) if repeat.any() else len(prop)
            taken[prop[:cut]] = True
            out[k:k + cut] = prop[:cut]
            ptr[rows[:cut]] += 1
            k += cut
            t0 += cut
    return out


def _proposals(cand: np.ndarray, ptr: np.ndarray, rows: np.ndarray, taken: np.ndarray) -> np.ndarray | None:
    """Each row's best candidate not taken yet (pointers advanced past taken ones)."""
    m = cand.shape[1]
    while True:
        p = ptr[rows]
        if (p >= m).any():
            return None
        prop = cand[rows, p]
        skip = taken[prop]
        if not skip.any():
            return prop
        ptr[rows[skip]] += 1


def _best_similarity(x: np.ndarray, target: np.ndarray) -> np.ndarray:
    if not len(x):
        return np.empty(0)
    step = max(1, _BLOCK_CELLS // len(target))
    return np.concatenate([(x[s:s + step] @ target.T).max(axis=1) for s in range(0, len(x), step)])


def _unit(x: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return np.divide(x, norms, out=np.zeros_like(x), where=norms > 0).astype(np.float32, copy=False)


def _quantiles(values: np.ndarray) -> dict[str, float] | None:
    if not len(values):
        return None
    q = np.quantile(values, [0.0, 0.5, 1.0])
    return {"min": float(q[0]), "median": float(q[1]), "max": float(q[2])}


def _read(path: str | Path) -> Dataset:
    from thresher.data.readers import read_dataset

    return read_dataset(path).dataset
