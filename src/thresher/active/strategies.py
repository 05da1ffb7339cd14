"""Query strategies: which unlabeled rows to label next.

Uncertainty scores (higher = more uncertain) from a probability table
(rows x classes): least confidence 1 - max p, margin 1 - (p1 - p2), entropy
-sum p log p. Diversity: greedy k-center on embeddings, distances only
against the labeled set and the picks (never an N x N matrix). Hybrid takes
the `factor * batch` most uncertain rows and spreads the batch over them by
k-center (a BADGE-like uncertainty + diversity batch).

Ties are broken uniformly at random with the round's generator, so a flat
probability table (e.g. a learner that has seen one class) degrades to
random sampling rather than to pool order.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from thresher.core.rng import make_rng
from thresher.errors import UsageError

UNCERTAINTY = ("least-confidence", "margin", "entropy")
STRATEGIES = ("random",) + UNCERTAINTY + ("kcenter", "hybrid")


def uncertainty(proba: np.ndarray, kind: str = "entropy") -> np.ndarray:
    """Per-row uncertainty of a (rows, classes) probability table; higher = more uncertain."""
    if kind not in UNCERTAINTY:
        raise UsageError(f"uncertainty must be one of {', '.join(UNCERTAINTY)}; got {kind!r}")
    P = np.asarray(proba, dtype=np.float64)
    if P.ndim != 2:
        raise UsageError(f"probabilities must be a (rows, classes) table, got shape {P.shape}")
    if P.shape[1] == 0:
        return np.zeros(len(P))
    if kind == "least-confidence":
        return 1.0 - P.max(axis=1)
    if kind == "margin":
        if P.shape[1] == 1:
            return np.zeros(len(P))
        top2 = np.partition(P, P.shape[1] - 2, axis=1)[:, -2:]
        return 1.0 - (top2[:, 1] - top2[:, 0])
    logp = np.log(np.where(P > 0, P, 1.0))
    return -(P * logp).sum(axis=1)


def top_k(scores: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """Positions of the k largest scores, highest first; ties in random order."""
    scores = np.asarray(scores, dtype=np.float64)
    k = min(int(k), len(scores))
    if k <= 0:
        return np.empty(0, dtype=np.int64)
    noise = rng.random(len(scores))
    if k < len(scores):
        kth = np.partition(scores, len(scores) - k)[len(scores) - k]
        cand = np.flatnonzero(scores >= kth)  # every row tied with the k-th competes
    else:
        cand = np.arange(len(scores))
    order = np.lexsort((noise[cand], -scores[cand]))
    return cand[order[:k]].astype(np.int64)


def _kcenter_pick(X: np.ndarray, candidates: np.ndarray, labeled: np.ndarray, k: int, metric: str,
                  rng: np.random.Generator) -> np.ndarray:
    """k rows of `candidates` by greedy k-center, starting from the labeled rows."""
    from thresher.selection.kcenter import kcenter_greedy

    k = min(k, len(candidates))
    if k <= 0:
        return np.empty(0, dtype=np.int64)
    if len(candidates) + len(labeled) == len(X):  # candidates are the whole rest: no copy of X
        order, _ = kcenter_greedy(X, k, initial=labeled if len(labeled) else None, metric=metric,
                                  random_state=rng)
        return order
    rows = np.concatenate([labeled, candidates]).astype(np.int64)
    initial = np.arange(len(labeled)) if len(labeled) else None
    order, _ = kcenter_greedy(X[rows], k, initial=initial, metric=metric, random_state=rng)
    return rows[order]


class Strategy:
    """A query strategy: `select(batch, unlabeled=..., labeled=..., proba=..., X=..., rng=...)`.

    `unlabeled` and `labeled` are row positions in `X`; `proba` (when the
    strategy needs it) is aligned with `unlabeled`. Returns `batch` positions
    from `unlabeled` (fewer when fewer are left), in pick order.
    """

    name = "strategy"
    needs_proba = False
    needs_X = False

    def get_params(self) -> dict[str, Any]:
        return {}

    def select(self, batch: int, *, unlabeled: np.ndarray, labeled: np.ndarray | None = None,
               proba: np.ndarray | None = None, X: np.ndarray | None = None,
               rng: np.random.Generator | int | None = None) -> np.ndarray:
        unlabeled = np.asarray(unlabeled, dtype=np.int64)
        labeled = np.empty(0, dtype=np.int64) if labeled is None else np.asarray(labeled, dtype=np.int64)
        if isinstance(batch, bool) or not isinstance(batch, (int, np.integer)) or batch < 1:
            raise UsageError(f"batch must be a positive integer, got {batch!r}")
        if self.needs_proba and (proba is None or len(proba) != len(unlabeled)):
            raise UsageError(f"strategy {self.name!r} needs one probability row per unlabeled row")
        if self.needs_X and X is None:
            raise UsageError(f"strategy {self.name!r} needs the embedding matrix X")
        return self._select(min(int(batch), len(unlabeled)), unlabeled, labeled, proba, X, make_rng(rng))

    def _select(self, k, unlabeled, labeled, proba, X, rng) -> np.ndarray:
        raise NotImplementedError


class RandomStrategy(Strategy):
    """Uniform random rows (the baseline every strategy is compared with)."""

    name = "random"

    def _select(self, k, unlabeled, labeled, proba, X, rng):
        return rng.choice(unlabeled, size=k, replace=False).astype(np.int64)


class UncertaintyStrategy(Strategy):
    """The k rows the learner is least sure about (least-confidence, margin or entropy)."""

    needs_proba = True

    def __init__(self, kind: str = "entropy"):
        if kind not in UNCERTAINTY:
            raise UsageError(f"uncertainty must be one of {', '.join(UNCERTAINTY)}; got {kind!r}")
        self.kind = kind
        self.name = kind

    def get_params(self) -> dict[str, Any]:
        return {"kind": self.kind}

    def _select(self, k, unlabeled, labeled, proba, X, rng):
        return unlabeled[top_k(uncertainty(proba, self.kind), k, rng)]


class KCenterStrategy(Strategy):
    """Coreset: each pick is the unlabeled row farthest from the labeled rows and earlier picks."""

    name = "kcenter"
    needs_X = True

    def __init__(self, metric: str = "euclidean"):
        self.metric = metric

    def get_params(self) -> dict[str, Any]:
        return {"metric": self.metric}

    def _select(self, k, unlabeled, labeled, proba, X, rng):
        return _kcenter_pick(X, unlabeled, labeled, k, self.metric, rng)


class HybridStrategy(Strategy):
    """Uncertainty top-m (m = factor x batch), then k-center within them for a spread batch."""

    name = "hybrid"
    needs_proba = True
    needs_X = True

    def __init__(self, kind: str = "entropy", factor: int = 5, metric: str = "euclidean"):
        if kind not in UNCERTAINTY:
            raise UsageError(f"uncertainty must be one of {', '.join(UNCERTAINTY)}; got {kind!r}")
        if isinstance(factor, bool) or not isinstance(factor, (int, np.integer)) or factor < 1:
            raise UsageError(f"factor must be an integer >= 1, got {factor!r}")
        self.kind, self.factor, self.metric = kind, int(factor), metric

    def get_params(self) -> dict[str, Any]:
        return {"kind": self.kind, "factor": self.factor, "metric": self.metric}

    def _select(self, k, unlabeled, labeled, proba, X, rng):
        top = unlabeled[top_k(uncertainty(proba, self.kind), self.factor * k, rng)]
        return _kcenter_pick(X, top, labeled, k, self.metric, rng)


def make_strategy(name: str, *, uncertainty: str = "entropy", factor: int = 5,
                  metric: str = "euclidean") -> Strategy:
    """A strategy by name: random, least-confidence, margin, entropy, kcenter or hybrid."""
    if name == "random":
        return RandomStrategy()
    if name in UNCERTAINTY:
        return UncertaintyStrategy(name)
    if name == "kcenter":
        return KCenterStrategy(metric)
    if name == "hybrid":
        return HybridStrategy(uncertainty, factor, metric)
    raise UsageError(f"unknown strategy {name!r}; choose one of {', '.join(STRATEGIES)}")
