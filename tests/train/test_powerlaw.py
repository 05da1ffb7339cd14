"""Saturating power-law fit: recovers known curves, bootstrap intervals cover the truth."""
import numpy as np
import pytest

from thresher.errors import UsageError
from thresher.train.powerlaw import bootstrap_fit, fit_power_law

A, B, C = 5.0, 0.5, 0.2
SIZES = np.repeat([100, 200, 400, 800, 1600], 3)


def truth(n):
    return A * np.asarray(n, dtype=float) ** -B + C


def test_exact_points_are_recovered():
    n = np.array([50, 100, 200, 400, 800, 1600])
    fit = fit_power_law(n, truth(n))
    assert fit.a == pytest.approx(A, rel=0.02)
    assert fit.b == pytest.approx(B, rel=0.02)
    assert fit.c == pytest.approx(C, abs=0.002)
    assert np.allclose(fit.predict([3200, 10000]), truth([3200, 10000]), atol=1e-3)


def test_noisy_points_recover_the_parameters_within_tolerance():
    rng = np.random.default_rng(0)
    fits = [fit_power_law(SIZES, truth(SIZES) + rng.normal(0, 0.003, SIZES.size)) for _ in range(20)]
    b = np.array([f.b for f in fits])
    c = np.array([f.c for f in fits])
    assert abs(np.median(b) - B) < 0.05
    assert abs(np.median(c) - C) < 0.01
    assert np.all(np.isfinite(fits[0].cov))  # 15 points, 3 parameters: covariance is defined


def test_bootstrap_interval_covers_the_truth_in_most_replications():
    covered = []
    for rep in range(50):
        rng = np.random.default_rng(100 + rep)
        fit = bootstrap_fit(SIZES, truth(SIZES) + rng.normal(0, 0.01, SIZES.size), n_boot=200, seed=rep)
        lo, hi = fit.predict_interval([3200])
        covered.append(lo[0] <= truth(3200) <= hi[0])
    # nominal 95%; 3 seeds per size makes the percentile bootstrap a bit narrow (measured ~0.84)
    assert np.mean(covered) >= 0.7


def test_residual_bootstrap_with_one_value_per_size():
    n = np.array([100, 200, 400, 800, 1600, 3200])
    rng = np.random.default_rng(1)
    fit = bootstrap_fit(n, truth(n) + rng.normal(0, 0.005, n.size), n_boot=300, seed=0)
    lo, hi = fit.predict_interval(n)
    assert np.all(lo <= fit.predict(n) + 1e-9) and np.all(fit.predict(n) <= hi + 1e-9)
    ci = fit.param_intervals()
    assert ci["c"][0] <= ci["c"][1]


def test_flat_data_gives_a_flat_curve():
    n = np.array([100, 200, 400, 800])
    fit = fit_power_law(n, np.full(4, 0.3))
    assert np.allclose(fit.predict([800, 8000]), 0.3, atol=1e-6)


def test_bounds_hold_on_rising_error():
    n = np.array([100, 200, 400, 800])
    fit = fit_power_law(n, np.array([0.1, 0.2, 0.3, 0.4]))  # error grows with data: a >= 0 forbids fitting that
    assert fit.a >= 0 and fit.c >= 0 and fit.b > 0


def test_too_few_sizes_is_a_usage_error():
    with pytest.raises(UsageError, match="at least 3 distinct sizes"):
        fit_power_law([100, 100, 200], [0.5, 0.4, 0.3])
    with pytest.raises(UsageError, match="sizes must be positive"):
        fit_power_law([0, 100, 200], [0.5, 0.4, 0.3])
    with pytest.raises(UsageError, match="no bootstrap"):
        fit_power_law([100, 200, 400], truth([100, 200, 400])).predict_interval([800])
