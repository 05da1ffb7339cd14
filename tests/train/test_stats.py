"""Paired bootstrap over eval rows x seeds: agreement with the plain metrics, coverage, verdicts."""
from __future__ import annotations

import numpy as np
import pytest

from thresher.train.metrics import classification_metrics
from thresher.train.stats import PairedBootstrap, RunRows, compare_to, metric_values, verdict


def run_rows(truth, pred, nll=None, tokens=None) -> RunRows:
    n = len(truth)
    nll = np.ones(n) if nll is None else np.asarray(nll, float)
    tokens = np.ones(n) if tokens is None else np.asarray(tokens, float)
    return RunRows(nll, tokens, np.asarray(truth), np.asarray(pred))


def test_unit_weights_give_the_plain_metrics():
    rng = np.random.default_rng(0)
    truth, pred = rng.integers(0, 3, 50), rng.integers(0, 3, 50)
    truth[:5] = -1  # free-text rows: no label
    nll, tokens = rng.uniform(0.1, 3, 50), rng.integers(1, 6, 50)
    run = run_rows(truth, pred, nll, tokens)
    w = np.ones((1, 50))
    labels = ["a", "b", "c"]
    ref = classification_metrics([labels[t] for t in truth[5:]], [labels[p] for p in pred[5:]], labels)
    assert metric_values(run, "accuracy", w, 3)[0] == pytest.approx(ref["accuracy"])
    assert metric_values(run, "macro_f1", w, 3)[0] == pytest.approx(ref["macro_f1"])
    assert metric_values(run, "loss", w, 3)[0] == pytest.approx(nll.sum() / tokens.sum())
    assert metric_values(run, "perplexity", w, 3)[0] == pytest.approx(np.exp(nll.sum() / tokens.sum()))


def test_paired_difference_interval_covers_the_truth_about_95_percent():
    """Two arms scored on the same rows, correct with p=0.70 and p=0.62 (correlated
    through a shared row difficulty); 3 seeds each. The 95% interval of the paired
    accuracy difference should cover the true 0.08 in ~95% of replications."""
    rng = np.random.default_rng(1)
    reps, n, seeds, covered = 300, 300, 3, 0
    for _ in range(reps):
        easy = rng.random(n) < 0.5  # shared difficulty: pairing matters
        truth = np.zeros(n, np.int64)
        runs_a, runs_b = [], []
        for _ in range(seeds):
            pa = np.where(easy, 0.9, 0.5)
            pb = np.where(easy, 0.82, 0.42)
            runs_a.append(run_rows(truth, np.where(rng.random(n) < pa, 0, 1)))
            runs_b.append(run_rows(truth, np.where(rng.random(n) < pb, 0, 1)))
        boot = PairedBootstrap(n, seeds, n_boot=400, seed=int(rng.integers(1 << 30)))
        a, b = boot.replicates(runs_a, "accuracy", 2), boot.replicates(runs_b, "accuracy", 2)
        point = np.mean([metric_values(r, "accuracy", np.ones((1, n)), 2)[0] for r in runs_a]) - np.mean(
            [metric_values(r, "accuracy", np.ones((1, n)), 2)[0] for r in runs_b])
        got = compare_to(a, b, point, "accuracy", n)
        covered += got["ci_low"] <= 0.08 <= got["ci_high"]
    rate = covered / reps
    se = np.sqrt(0.95 * 0.05 / reps)
    assert abs(rate - 0.95) < 3.5 * se + 0.015, rate  # percentile bootstrap: a little narrow at most


def test_loss_and_perplexity_intervals_stay_positive():
    rng = np.random.default_rng(2)
    runs = [run_rows(np.full(20, -1), np.full(20, -1), rng.exponential(0.2, 20), np.ones(20)) for _ in range(2)]
    boot = PairedBootstrap(20, 2, n_boot=500, seed=0)
    for metric in ("loss", "perplexity"):
        values = boot.replicates(runs, metric, 0)
        assert values.min() > 0


def test_compare_to_and_verdicts():
    rng = np.random.default_rng(3)
    same = compare_to(rng.normal(0.6, 0.02, 1000), rng.normal(0.6, 0.02, 1000), 0.01, "accuracy", 100)
    assert not same["better"] and not same["worse"] and same["rows_needed"] > 100
    assert same["mdd"] == pytest.approx(2.8 * same["se"], rel=0.01)
    better = compare_to(np.full(1000, 0.8) + rng.normal(0, 0.01, 1000), np.full(1000, 0.6), 0.2, "accuracy", 100)
    assert better["better"] and better["rows_needed"] is None
    lower_loss = compare_to(np.full(500, 0.5) + rng.normal(0, 0.01, 500), np.full(500, 1.0), 0.5, "loss", 100)
    assert lower_loss["better"]  # a lower loss is better: the sign follows the metric
    assert "better than random" in verdict("x", "file", better, better, "macro_f1")
    assert "not distinguishable from random" in verdict("x", "file", same, better, "macro_f1")
    assert "eval rows" in verdict("x", "file", same, better, "macro_f1")
    worse = dict(better, better=False, worse=True)
    assert verdict("x", "full", None, worse, "macro_f1").startswith("worse than base")
    assert verdict("full", "full", None, better, "macro_f1") == "better than base on macro_f1"


def test_rows_round_trip_through_json():
    run = run_rows([0, 1, -1], [1, 1, -1], [0.5, 0.25, 2.0], [1, 2, 3])
    back = RunRows.from_json(run.to_json())
    np.testing.assert_array_equal(back.truth, run.truth)
    np.testing.assert_allclose(back.nll, run.nll)
