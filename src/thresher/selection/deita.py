"""Score-first, diversity-aware selection (DEITA; Liu et al. 2023, "What Makes
Good Data for Alignment", Algorithm 1).

Rows are walked by score, highest first (ties: pool order). A row is kept only
if its largest cosine similarity to the rows kept so far is below `threshold`;
the walk stops when the budget (rows or tokens) is reached or the pool ends.

`deita_select` gives exactly the picks of the plain loop

    for i in order:
        if n_kept and (kept[:n_kept] @ emb[i]).max() >= threshold: continue
        if budget full: break
        kept[n_kept] = emb[i]; n_kept += 1

in float32, but processes candidates in blocks: one matrix product per block
against the kept rows (after a cheap search for a "witness" kept row that
already rules a candidate out), then a sequential pass over the block's
survivors only. A similarity that lands within float32 rounding of the
threshold is recomputed exactly as the loop computes it, so rounding
differences between matrix kernels never change a decision.

The walk holds one idea: score order plus a redundancy test. The inputs it
reads (scores, embeddings, token counts, budgets) come from
`thresher.selection.base`, which the other selectors share.
"""
from __future__ import annotations

import functools
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from typing import Any

import numpy as np

from thresher.core.budget import Budget
from thresher.core.selection import Selection
from thresher.data.dataset import Dataset
from thresher.errors import UsageError
from thresher.sampling._common import Design, check_field_name, check_number, check_random_state
from thresher.selection.base import (budget_limits, deterministic, embedding_matrix, max_keepable,  # noqa: F401
                                     score_fields, score_vector)

_EPS32 = 2.0 ** -24
_SCREEN_DIMS = 32
# A block whose products stay below this many multiply-adds runs on one BLAS
# thread: at that size OpenBLAS's thread hand-offs cost more than they save on
# a busy 2-core machine (bench_deita: 3-5x -> 5.5-9.6x); bigger ones keep threads.
_ONE_THREAD_MACS = 1 << 31


class DeitaSelector(Design):
    """Walk rows by `score` (highest first) and keep a row only if its cosine
    similarity to every row kept so far is below `threshold`.

    Parameters
    ----------
    score: a score field ("quality_score") or a product of fields; the
        default "complexity*quality_score" is DEITA's EVOL score (complexity x
        quality) on thresher's proxies (`features.scores`), read from
        `features` or from the dataset. Ties keep pool order.
    threshold: a row whose largest cosine similarity to the kept rows is
        >= threshold is redundant (DEITA uses 0.9).
    embedding: the name of the embedding feature ((N, d), L2-normalised rows).
    random_state: accepted for a uniform API; the selection is deterministic.

    The walk stops when the budget is reached: a row budget when that many
    rows are kept; a token budget (`features["tokens"]`) at the first kept row
    that would overflow it. Without a budget it walks the whole pool (a
    diversity filter). pi and weights are NaN (no design probabilities).
    """

    method = "deita"
    name = "deita"
    needs_budget = False  # without one, every row that is not redundant is kept

    def __init__(self, score: str = "complexity*quality_score", threshold: float = 0.9, embedding: str = "embedding",
                 random_state: int | np.random.Generator | None = None):
        self.score = score
        self.threshold = threshold
        self.embedding = embedding
        self.random_state = random_state
        score_fields(score)
        check_number("threshold", threshold, 0.0, 1.0, low_open=True)
        check_field_name("embedding", embedding)
        check_random_state(random_state)

    @property
    def requires(self) -> list[str]:
        return [self.embedding, *score_fields(self.score), "tokens"]

    def select(self, ds: Dataset, budget: int | Budget | None = None,
               features: dict[str, np.ndarray] | None = None) -> Selection:
        """Run the walk on `ds` (budget None: the whole pool); indices come in walk (score) order."""
        emb = embedding_matrix(ds, features, self.embedding)
        scores = score_vector(ds, features, self.score)
        max_rows, tokens, max_tokens = budget_limits(budget, ds, features)
        res = deita_select(emb, scores, float(self.threshold), max_rows=max_rows, tokens=tokens,
                           max_tokens=max_tokens)
        kept_scores = scores[res.indices]
        diagnostics: dict[str, Any] = {
            "kept": len(res.indices), "walked": len(res.walked), "redundant": res.redundant,
            "stopped": res.stopped, "exact_checks": res.exact_checks, "threshold": float(self.threshold),
            "score_min": float(kept_scores.min()) if len(kept_scores) else None,
            "score_max": float(kept_scores.max()) if len(kept_scores) else None,
        }
        if max_tokens is not None:
            diagnostics["tokens_used"] = res.tokens_used
        return deterministic(res.indices, method=self.method, params=self.get_params(), seed=self._seed(),
                             pool_size=len(ds), diagnostics=diagnostics, removed=self._removed(res, len(ds)))

    def _removed(self, res: "DeitaResult", n: int) -> dict[str, np.ndarray]:
        """Rows left out, by reason (for the recipe trace)."""
        fate = np.zeros(n, dtype=np.int8)  # 0: not walked, 1: redundant, 2: kept
        fate[res.walked] = 1
        fate[res.indices] = 2
        if res.overflow is not None:
            fate[res.overflow] = 0
        reasons = {f"redundant: cosine >= {self.threshold:g} to a higher-scored kept row": np.flatnonzero(fate == 1),
                   "not reached: the budget filled first": np.flatnonzero(fate == 0)}
        return {k: v for k, v in reasons.items() if len(v)}


@dataclass
class DeitaResult:
    """indices: kept rows in selection order. walked: rows walked, in order.
    redundant: walked rows dropped as too similar. overflow: the kept-worthy
    row that did not fit a token budget (the walk stopped there), or None.
    exact_checks: similarities recomputed because they fell within rounding
    of the threshold. stopped: "budget" or "pool" (the pool ran out)."""

    indices: np.ndarray
    walked: np.ndarray
    redundant: int
    overflow: int | None
    exact_checks: int
    stopped: str
    tokens_used: float


def deita_select(embeddings: np.ndarray, scores: np.ndarray, threshold: float = 0.9, *,
                 max_rows: int | None = None, tokens: np.ndarray | None = None,
                 max_tokens: float | None = None, block_size: int = 4096,
                 sub_block: int = 1024) -> DeitaResult:
    """DEITA's score-first, diversity-aware walk over a pool.

    embeddings: (N, d) rows, L2-normalised (rows that are not are normalised).
    scores: (N,) finite; higher is walked first. max_rows / max_tokens: the
    budget (None = unlimited); `tokens` gives per-row counts for max_tokens.
    """
    emb = np.ascontiguousarray(embeddings, dtype=np.float32)
    if emb.ndim != 2:
        raise UsageError(f"embeddings must be a 2-D array (rows, dims), got shape {emb.shape}")
    scores = np.asarray(scores, dtype=np.float64)
    if scores.shape != (len(emb),):
        raise UsageError(f"scores must have one value per row ({len(emb)}), got shape {scores.shape}")
    if not np.all(np.isfinite(scores)):
        raise UsageError("scores must be finite; fill or filter missing scores first")
    if max_tokens is not None and tokens is None:
        raise UsageError("a token budget needs per-row token counts")
    if block_size < 1 or sub_block < 1:
        raise UsageError("block_size and sub_block must be positive")
    order = np.argsort(-scores, kind="stable")
    walk = _Walk(emb, float(threshold), max_rows, tokens, max_tokens, sub_block)
    for start in range(0, len(order), block_size):
        if walk.full():
            break
        walk.block(order[start:start + block_size])
    return walk.result(order)


class _Walk:
    """State of one walk: the kept buffer, budget use and counters."""

    def __init__(self, emb: np.ndarray, threshold: float, max_rows: int | None,
                 tokens: np.ndarray | None, max_tokens: float | None, sub_block: int):
        self.emb, self.thr, self.sub = emb, threshold, sub_block
        self.tokens = None if tokens is None else np.asarray(tokens, dtype=np.float64)
        self.max_rows, self.max_tokens = max_rows, max_tokens
        cap = max_keepable(len(emb), max_rows, self.tokens, max_tokens)
        self.kept = _KeptSet(cap, emb.shape[1])
        # Any two float32 evaluations of a dot product of unit vectors differ by
        # less than 2*d*eps (Higham's gamma_d bound, both sides).
        tol = 2.2 * emb.shape[1] * _EPS32
        self.lo, self.hi = threshold - tol, threshold + tol
        self.rows: list[np.ndarray] = []
        self.scanned = self.exact_checks = 0
        self.overflow: int | None = None
        self.used = 0.0
        self.stopped = "pool"

    def full(self) -> bool:
        if self.max_rows is not None and self.kept.n >= self.max_rows:
            self.stopped = "budget"
        return self.stopped == "budget"

    def block(self, idx: np.ndarray) -> None:
        """Walk the candidates `idx` (in walk order).

        One product against the rows kept before the block rules most
        candidates out; the block is then resolved in sub-blocks, each first
        checked against the rows this block has already kept, so the
        (survivors x survivors) similarity matrix stays small."""
        macs = len(idx) * (self.kept.n + self.sub) * self.emb.shape[1]
        with _blas_threads(1 if macs < _ONE_THREAD_MACS else None):
            self._block(idx)

    def _block(self, idx: np.ndarray) -> None:
        x = _unit_rows(self.emb[idx], idx)
        v = self.kept.max_sim(x, self.hi)
        n_before = self.kept.n
        for s0 in range(0, len(idx), self.sub):
            alive = s0 + np.flatnonzero(v[s0:s0 + self.sub] < self.hi)
            if self.kept.n > n_before and len(alive):
                v[alive] = np.maximum(v[alive], self.kept.full_max(x[alive], start=n_before))
                alive = alive[v[alive] < self.hi]
            last = self._resolve(idx[alive], x[alive], v[alive])
            if last is not None:
                self.scanned += int(alive[last]) + 1
                return
        self.scanned += len(idx)

    def _resolve(self, idx: np.ndarray, x: np.ndarray, v: np.ndarray) -> int | None:
        """Sequential pass over one block's survivors (candidates no earlier
        block's kept row rules out); returns the survivor position where the
        walk stopped on the budget, or None."""
        sims = x @ x.T if len(idx) > 1 else None
        picked: list[int] = []
        pos, last = 0, None
        while pos < len(idx):
            rest = np.flatnonzero(v[pos:] < self.hi)
            if not len(rest):
                break
            i = pos + int(rest[0])
            pos = i + 1
            if v[i] >= self.lo and not self._exact_keep(x[i]):
                continue
            if not self._fits(idx[i]):
                self.stopped, self.overflow, last = "budget", int(idx[i]), i
                break
            self.kept.add(x[i])
            picked.append(i)
            if self.full():
                last = i
                break
            if sims is not None:
                np.maximum(v[pos:], sims[i, pos:], out=v[pos:])
        if picked:
            self.rows.append(idx[np.asarray(picked)])
        return last

    def _exact_keep(self, x: np.ndarray) -> bool:
        self.exact_checks += 1
        n = self.kept.n
        return n == 0 or not ((self.kept.buf[:n] @ x).max() >= self.thr)

    def _fits(self, row: int) -> bool:
        if self.max_tokens is None:
            return True
        t = float(self.tokens[row])
        if self.used + t > self.max_tokens:
            return False
        self.used += t
        return True

    def result(self, order: np.ndarray) -> DeitaResult:
        rows = np.concatenate(self.rows).astype(np.int64) if self.rows else np.empty(0, dtype=np.int64)
        redundant = self.scanned - len(rows) - (self.overflow is not None)
        return DeitaResult(rows, order[:self.scanned], redundant, self.overflow, self.exact_checks,
                           self.stopped, self.used)


class _KeptSet:
    """The kept rows in a preallocated float32 buffer.

    To drop a redundant candidate it is enough to find one kept row too
    similar to it (a "witness"). The kept rows' leading coordinates, scaled to
    unit length, act as a cheap sketch: the kept row nearest a candidate in the
    sketch is usually its witness, and one exact dot product confirms it. Only
    candidates without a confirmed witness pay for the full product.
    """

    def __init__(self, cap: int, d: int):
        self.buf = np.empty((cap, d), dtype=np.float32)
        self.n = 0
        self.screen = d >= 2 * _SCREEN_DIMS
        self.sketch = np.empty((cap if self.screen else 0, _SCREEN_DIMS), dtype=np.float32)
        self.n_sketched = 0
        self.reject_rate = 0.0  # of the last block: the sketch pays off when most are dropped

    def add(self, x: np.ndarray) -> None:
        self.buf[self.n] = x
        self.n += 1

    def max_sim(self, x: np.ndarray, hi: float) -> np.ndarray:
        """Per candidate, its largest similarity to the kept rows (-inf if none).

        Candidates for which a witness with similarity >= `hi` is found get
        that similarity instead (enough to know they are dropped)."""
        out = np.full(len(x), -np.inf, dtype=np.float32)
        if self.n == 0:
            return out
        todo = np.arange(len(x))
        if self.screen and self.n >= 4 * _SCREEN_DIMS and self.reject_rate >= 0.5:
            wsim = self._witness_sims(x)
            found = wsim >= hi
            out[found] = wsim[found]
            todo = np.flatnonzero(~found)
        if len(todo):
            out[todo] = self.full_max(x if len(todo) == len(x) else x[todo])
        self.reject_rate = float(np.mean(out >= hi))
        return out

    def _witness_sims(self, x: np.ndarray) -> np.ndarray:
        """Exact similarity of each candidate to its nearest kept row in the sketch."""
        if self.n_sketched < self.n:
            part = self.buf[self.n_sketched:self.n, :_SCREEN_DIMS]
            norms = np.sqrt(np.einsum("ij,ij->i", part, part))
            self.sketch[self.n_sketched:self.n] = part / np.maximum(norms, 1e-12)[:, None]
            self.n_sketched = self.n
        xs = x[:, :_SCREEN_DIMS]
        step = max(256, (1 << 22) // max(1, len(x)))  # (candidates, chunk) product of ~16 MB
        if self.n <= step:
            # Rows in pieces whose (rows, kept) product stays in cache (~1 MB).
            best = np.empty(len(x), dtype=np.int64)
            piece = max(64, (1 << 18) // self.n)
            for r0 in range(0, len(x), piece):
                best[r0:r0 + piece] = (xs[r0:r0 + piece] @ self.sketch[:self.n].T).argmax(axis=1)
        else:
            best = np.zeros(len(x), dtype=np.int64)
            top = np.full(len(x), -np.inf, dtype=np.float32)
            rows = np.arange(len(x))
            for c0 in range(0, self.n, step):
                s = xs @ self.sketch[c0:min(self.n, c0 + step)].T
                arg = s.argmax(axis=1)
                val = s[rows, arg]
                better = val > top
                top[better], best[better] = val[better], arg[better] + c0
        return np.einsum("ij,ij->i", x, self.buf[best])

    def full_max(self, x: np.ndarray, start: int = 0) -> np.ndarray:
        """Largest similarity of each row of `x` to kept rows start..n-1."""
        out = np.full(len(x), -np.inf, dtype=np.float32)
        # Chunk the kept rows so the (candidates, chunk) product stays ~16 MB.
        step = max(256, (1 << 22) // max(1, len(x)))
        for c0 in range(start, self.n, step):
            np.maximum(out, (x @ self.buf[c0:min(self.n, c0 + step)].T).max(axis=1), out=out)
        return out


def _unit_rows(x: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """`x` with rows scaled to unit length; rows already unit (to 1e-3) are
    left bit-identical, zero rows stay zero."""
    norms = np.sqrt(np.einsum("ij,ij->i", x, x))
    bad = ~np.isfinite(norms)  # a NaN/inf entry makes the norm non-finite
    if bad.any():
        raise UsageError(f"the embedding of row {int(rows[np.argmax(bad)])} holds NaN or inf; recompute it")
    off = (np.abs(norms - 1.0) > 1e-3) & (norms > 0)
    if off.any():
        x[off] /= norms[off, None]
    return x


def _blas_threads(limit: int | None) -> AbstractContextManager:
    """Cap BLAS threads for a `with` block (a no-op without threadpoolctl)."""
    controller = _threadpool_controller() if limit is not None else None
    return nullcontext() if controller is None else controller.limit(limits=limit, user_api="blas")


@functools.cache
def _threadpool_controller() -> Any:
    try:
        from threadpoolctl import ThreadpoolController
    except ImportError:
        return None
    return ThreadpoolController()
