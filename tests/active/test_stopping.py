"""Stopping rules fire (and stay quiet) on crafted trajectories."""
import numpy as np
import pytest
from sklearn.metrics import cohen_kappa_score

from thresher.active.stopping import (BudgetRule, PlateauRule, StabilizingPredictions, cohen_kappa,
                                      first_reason)
from thresher.errors import UsageError


def hist(accuracy=None, kappa=None, batch=20):
    n = len(accuracy if accuracy is not None else kappa)
    return [{"round": r, "labeled": batch * (r + 1), "accuracy": None if accuracy is None else accuracy[r],
             "kappa_vs_prev": None if kappa is None else kappa[r]} for r in range(n)]


def test_kappa_matches_sklearn():
    rng = np.random.default_rng(0)
    for _ in range(20):
        a = rng.choice(["x", "y", "z"], size=50, p=[0.6, 0.3, 0.1])
        b = np.where(rng.random(50) < 0.7, a, rng.choice(["x", "y", "z"], size=50))
        assert cohen_kappa(a, b) == pytest.approx(cohen_kappa_score(a, b))


def test_kappa_edge_cases():
    assert cohen_kappa(["a"] * 5, ["a"] * 5) == 1.0
    assert cohen_kappa(["a", "b", "a"], ["a", "b", "a"]) == 1.0
    assert cohen_kappa(["a", "b"], ["b", "a"]) < 0
    with pytest.raises(UsageError):
        cohen_kappa(["a"], ["a", "b"])


def test_plateau_fires_when_recent_gain_is_below_min_delta():
    rule = PlateauRule(patience=3, min_delta=0.005)
    assert rule.check(hist([0.5, 0.6, 0.7, 0.701, 0.702, 0.703])) is not None  # +0.003 over 3 rounds


def test_plateau_quiet_while_improving_or_too_short():
    rule = PlateauRule(patience=3, min_delta=0.005)
    assert rule.check(hist([0.5, 0.6, 0.7, 0.71, 0.70, 0.70])) is None  # +0.01 in the window
    assert rule.check(hist([0.5, 0.5, 0.5])) is None  # no round before the window
    assert PlateauRule(patience=2, min_delta=0.0).check(hist([0.5, 0.6, 0.6, 0.59])) is not None
    assert PlateauRule(patience=2, min_delta=0.02).check(hist([0.5, 0.6, 0.61, 0.615])) is not None
    assert PlateauRule(patience=2, min_delta=0.01).check(hist([0.5, 0.6, 0.61, 0.615])) is None


def test_plateau_on_another_metric():
    h = hist([0.5, 0.6, 0.7, 0.8])
    for r, f1 in zip(h, [0.3, 0.3, 0.3, 0.3]):
        r["macro_f1"] = f1
    assert PlateauRule(patience=2, metric="macro_f1").check(h) is not None
    assert PlateauRule(patience=2, metric="accuracy").check(h) is None


def test_stabilizing_predictions_needs_k_rounds_in_a_row():
    rule = StabilizingPredictions(threshold=0.99, window=3)
    assert rule.check(hist(kappa=[None, 0.5, 0.995, 0.995, 0.999])) is not None
    assert rule.check(hist(kappa=[None, 0.995, 0.98, 0.995, 0.995])) is None  # broken streak
    assert rule.check(hist(kappa=[None, 0.995, 0.995])) is None  # first round has no kappa
    assert rule.check(hist(kappa=[0.995, 0.995])) is None  # shorter than the window
    assert StabilizingPredictions(threshold=0.9, window=1).check(hist(kappa=[None, 0.95])) is not None


def test_budget_rule():
    assert BudgetRule(max_labels=100).check(hist([0.1] * 5)) is not None  # 100 labels
    assert BudgetRule(max_labels=101).check(hist([0.1] * 5)) is None
    assert BudgetRule(max_rounds=4).check(hist([0.1] * 5)) is not None  # round 4
    assert BudgetRule(max_rounds=5).check(hist([0.1] * 5)) is None
    assert BudgetRule().check([]) is None


def test_first_reason_in_rule_order():
    h = hist([0.5, 0.5, 0.5, 0.5, 0.5])
    reason = first_reason([PlateauRule(patience=2), BudgetRule(max_labels=100)], h)
    assert reason.startswith("plateau")
    assert first_reason([BudgetRule(max_labels=100), PlateauRule(patience=2)], h).startswith("budget")
    assert first_reason([BudgetRule(max_labels=1000)], h) is None


def test_rule_parameters_are_validated():
    with pytest.raises(UsageError):
        PlateauRule(patience=0)
    with pytest.raises(UsageError):
        PlateauRule(min_delta=-1)
    with pytest.raises(UsageError):
        StabilizingPredictions(threshold=1.5)
    with pytest.raises(UsageError):
        BudgetRule(max_labels=0)
