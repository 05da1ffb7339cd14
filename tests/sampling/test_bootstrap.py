import numpy as np
import pytest

from thresher.errors import UsageError
from thresher.sampling import bootstrap
from thresher.sampling.bootstrap import bootstrap_ci


def test_mean_estimate_and_standard_error_match_theory():
    x = np.random.default_rng(1).normal(10, 3, size=200)
    r = bootstrap_ci(x, "mean", n_resamples=4000, random_state=0)
    assert r.estimate == pytest.approx(x.mean())
    # Bootstrap SE of the mean -> plug-in sd/sqrt(n); the replicate sd has relative SE ~1/sqrt(2B).
    plug_in = x.std(ddof=0) / np.sqrt(len(x))
    assert abs(r.std_error / plug_in - 1) < 4.5 / np.sqrt(2 * 4000)
    assert r.low < x.mean() < r.high
    # Percentile interval ~ mean ± 1.96 SE.
    assert r.high - r.low == pytest.approx(2 * 1.96 * plug_in, rel=0.08)
    assert r.n_resamples == 4000 and r.confidence == 0.95 and r.statistic == "mean"


def test_percentile_interval_coverage_is_near_nominal():
    rng = np.random.default_rng(7)
    datasets, hits = 300, 0
    for i in range(datasets):
        x = rng.normal(5, 2, size=60)
        r = bootstrap_ci(x, "mean", n_resamples=400, random_state=i)
        hits += r.low <= 5 <= r.high
    cover = hits / datasets
    # Percentile bootstrap for a mean at n=60 is ~0.94; binomial SE over 300 datasets ~0.014.
    assert 0.94 - 4 * 0.014 <= cover <= 0.95 + 4 * 0.013


def test_median_and_callables():
    x = np.random.default_rng(2).exponential(size=101)
    med = bootstrap_ci(x, "median", n_resamples=500, random_state=0)
    assert med.estimate == pytest.approx(np.median(x)) and med.low <= med.estimate <= med.high
    # A numpy-style reduction with `axis` runs vectorized and equals the built-in.
    a = bootstrap_ci(x, np.mean, n_resamples=300, random_state=5)
    b = bootstrap_ci(x, "mean", n_resamples=300, random_state=5)
    assert (a.low, a.high, a.std_error) == pytest.approx((b.low, b.high, b.std_error))
    # A per-sample callable (no axis) sees 1-D arrays.
    seen = []

    def p90(v):
        seen.append(v.ndim)
        return np.percentile(v, 90)

    c = bootstrap_ci(x, p90, n_resamples=50, random_state=0)
    assert set(seen) == {1} and c.estimate == pytest.approx(np.percentile(x, 90)) and c.statistic == "p90"


def test_chunking_gives_the_same_statistics(monkeypatch):
    x = np.random.default_rng(3).normal(size=50)
    whole = bootstrap_ci(x, "std", n_resamples=2000, random_state=0)
    monkeypatch.setattr(bootstrap, "CHUNK_CELLS", 120)  # two resamples per chunk
    chunked = bootstrap_ci(x, "std", n_resamples=2000, random_state=1)
    assert chunked.estimate == pytest.approx(x.std(ddof=1))
    # Two independent B=2000 runs: the SEs agree within ~4.5 x sqrt(2/(2B)) relative.
    assert abs(chunked.std_error / whole.std_error - 1) < 4.5 * np.sqrt(2 / (2 * 2000))


def test_same_seed_same_result_different_seed_differs():
    x = np.arange(30.0)
    assert bootstrap_ci(x, random_state=4) == bootstrap_ci(x, random_state=4)
    assert bootstrap_ci(x, random_state=4).low != bootstrap_ci(x, random_state=5).low


@pytest.mark.parametrize("kwargs, match", [
    ({"values": []}, "non-empty"),
    ({"values": [1.0, np.nan]}, "missing"),
    ({"values": [[1.0, 2.0]]}, "1-D"),
    ({"values": ["a", "b"]}, "numbers"),
    ({"values": [1.0, 2.0], "statistic": "mode"}, "statistic"),
    ({"values": [1.0, 2.0], "statistic": 3}, "statistic"),
    ({"values": [1.0, 2.0], "confidence": 95}, "confidence"),
    ({"values": [1.0, 2.0], "n_resamples": 1}, "n_resamples"),
    ({"values": [1.0, 2.0], "random_state": -3}, "random_state"),
])
def test_errors(kwargs, match):
    with pytest.raises(UsageError, match=match):
        bootstrap_ci(**kwargs)
