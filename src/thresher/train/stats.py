"""Paired bootstrap statistics for `compare`: intervals over eval rows x seeds,
differences against a reference arm, the minimum detectable difference and a
plain verdict.

Every run of every arm is scored on the same eval rows, and run k of two arms
uses the same seed (the same random subset seed and training seed). One
bootstrap replicate draws the eval rows with replacement (one weight vector
shared by every arm) and the seeds with replacement (one index vector shared
by every arm); an arm's value in a replicate is the mean over the drawn seeds
of its metric on the weighted rows, and a difference is taken replicate by
replicate, so it is paired on rows and on seeds. Intervals are percentile
intervals of the replicates: a loss interval is an interval of a mean NLL and
perplexity's is its exp, so neither can leave (0, inf).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from thresher.train.results import higher_is_better

Z_POWER = 1.959964 + 0.841621  # two-sided 5% test with 80% power


@dataclass
class RunRows:
    """One run's per-row scores: NLL sum and token count of every eval row,
    and for the label rows their true and predicted class codes (-1 elsewhere)."""

    nll: np.ndarray
    tokens: np.ndarray
    truth: np.ndarray
    pred: np.ndarray

    @classmethod
    def from_scores(cls, scores, labels: list[str]) -> "RunRows":
        code = {lab: k for k, lab in enumerate(labels)}
        truth = np.array([code.get(t, -1) if t is not None else -1 for t in scores.truth], np.int64)
        pred = np.array([code.get(p, -1) if p is not None else -1 for p in scores.pred], np.int64)
        return cls(np.asarray(scores.nll, float), np.asarray(scores.tokens, float), truth, pred)

    def to_json(self) -> dict:
        return {"nll": np.round(self.nll, 5).tolist(), "tokens": self.tokens.astype(int).tolist(),
                "truth": self.truth.tolist(), "pred": self.pred.tolist()}

    @classmethod
    def from_json(cls, d: dict) -> "RunRows":
        return cls(np.asarray(d["nll"], float), np.asarray(d["tokens"], float), np.asarray(d["truth"], np.int64),
                   np.asarray(d["pred"], np.int64))


def metric_values(run: RunRows, metric: str, weights: np.ndarray, n_labels: int) -> np.ndarray:
    """The metric of one run under each row-weight vector (rows of `weights`, (B, n))."""
    if metric in ("loss", "perplexity"):
        loss = (weights @ run.nll) / np.maximum(weights @ run.tokens, 1e-12)
        return loss if metric == "loss" else np.exp(loss)
    lab = run.truth >= 0
    w = weights[:, lab]
    truth, pred = run.truth[lab], run.pred[lab]
    if metric == "accuracy":
        return (w @ (truth == pred)) / np.maximum(w.sum(axis=1), 1e-12)
    if metric == "macro_f1":
        f1 = np.zeros((weights.shape[0], n_labels))
        for c in range(n_labels):
            tp = w @ ((truth == c) & (pred == c))
            fp = w @ ((truth != c) & (pred == c))
            fn = w @ ((truth == c) & (pred != c))
            den = 2 * tp + fp + fn
            f1[:, c] = np.where(den > 0, 2 * tp / np.maximum(den, 1e-12), 0.0)
        return f1.mean(axis=1)
    raise ValueError(f"no bootstrap for metric {metric!r}")


class PairedBootstrap:
    """Replicates shared by every arm: row weights (B, n) and seed draws (B, S)."""

    def __init__(self, n_rows: int, n_seeds: int, n_boot: int = 2000, seed: int = 0):
        rng = np.random.default_rng([seed, 7919])
        self.n_rows, self.n_seeds = n_rows, n_seeds
        self.weights = rng.multinomial(n_rows, np.full(n_rows, 1.0 / n_rows), size=n_boot).astype(float)
        self.seed_draws = rng.integers(0, n_seeds, size=(n_boot, n_seeds))

    def replicates(self, runs: list[RunRows], metric: str, n_labels: int) -> np.ndarray:
        """(B,) bootstrap values of the arm's mean-over-seeds metric. An arm with
        one run (the untuned base) gives that run's value in every seed draw."""
        per_run = np.stack([metric_values(r, metric, self.weights, n_labels) for r in runs])  # (R, B)
        if len(runs) == 1:
            return per_run[0]
        idx = self.seed_draws % len(runs)
        return per_run[idx, np.arange(per_run.shape[1])[:, None]].mean(axis=1)


def interval(values: np.ndarray, level: float = 0.95) -> tuple[float, float]:
    lo, hi = np.quantile(values, [(1 - level) / 2, (1 + level) / 2])
    return float(lo), float(hi)


def compare_to(arm: np.ndarray, ref: np.ndarray, point: float, metric: str, n_rows: int,
               level: float = 0.95) -> dict:
    """Paired difference arm - ref (signed so that > 0 is better), its interval,
    the minimum detectable difference at 80% power, and the eval rows that
    would detect the observed difference."""
    sign = 1.0 if higher_is_better(metric) else -1.0
    diff = sign * (arm - ref)
    lo, hi = interval(diff, level)
    se = float(diff.std(ddof=1))
    better, worse = lo > 0, hi < 0
    rows_needed = None
    if not (better or worse) and abs(point) > 1e-12 and se > 0:
        rows_needed = int(np.ceil(n_rows * (Z_POWER * se / abs(point)) ** 2))
    return {"diff": point, "ci_low": lo, "ci_high": hi, "se": se, "mdd": Z_POWER * se,
            "better": bool(better), "worse": bool(worse), "rows_needed": rows_needed}


def verdict(name: str, kind: str, vs_random: dict | None, vs_base: dict | None, metric: str) -> str:
    """One plain sentence about an arm (see `compare_to` for the inputs)."""
    if kind == "base":
        return "untuned reference"
    if vs_base is not None and vs_base["worse"]:
        return (f"worse than base on {metric} - training failed; try a higher --lr, more --train-tokens, "
                "or check the prompts (truncation) and labels")
    if kind == "full" or vs_random is None:
        if vs_base is not None:
            return f"better than base on {metric}" if vs_base["better"] else f"not distinguishable from base on {metric}"
        return "no reference arm"
    if vs_random["better"]:
        return f"better than random on {metric}"
    if vs_random["worse"]:
        return f"worse than random on {metric}"
    need = vs_random.get("rows_needed")
    more = f"; need ~{need} eval rows (or more seeds) to tell a difference this size" if need else ""
    return f"not distinguishable from random on {metric} (MDD {vs_random['mdd']:.3g}{more})"


__all__ = ["RunRows", "PairedBootstrap", "metric_values", "interval", "compare_to", "verdict"]
