import json
import math

import numpy as np
import pytest
from scipy import stats

from thresher.errors import UsageError
from thresher.sampling.size import sample_size, sample_size_per_stratum


# -- textbook values ---------------------------------------------------------
def test_proportion_infinite_population_is_385():
    r = sample_size(margin=0.05, confidence=0.95, proportion=0.5)
    assert r.n0 == 385 and r.n_fpc == 385 and r.n == 385
    assert r.target == "proportion" and r.population is None
    assert r.z == pytest.approx(1.959964, abs=1e-6)


def test_proportion_finite_population_is_370():
    r = sample_size(10_000, margin=0.05)
    assert (r.n0, r.n_fpc, r.n) == (385, 370, 370)


def test_other_textbook_values():
    assert sample_size(margin=0.03).n == 1068  # the classic "1,067-1,068" poll size
    assert sample_size(margin=0.05, confidence=0.99).n == 664
    assert sample_size(1_000, margin=0.05).n == 278
    assert sample_size(margin=0.05, proportion=0.1).n == 139


def test_mean_sigma_10_margin_1_is_385():
    r = sample_size(margin=1, sd=10)
    assert r.n == 385 and r.target == "mean" and r.sd == 10 and r.proportion is None


def test_default_proportion_is_half():
    assert sample_size(margin=0.05).proportion == 0.5


# -- properties --------------------------------------------------------------
def test_monotone_in_margin_confidence_and_population():
    margins = [0.01, 0.02, 0.05, 0.1, 0.2]
    ns = [sample_size(margin=e).n for e in margins]
    assert ns == sorted(ns, reverse=True) and len(set(ns)) == len(ns)
    confs = [0.8, 0.9, 0.95, 0.99, 0.999]
    ns = [sample_size(margin=0.05, confidence=c).n for c in confs]
    assert ns == sorted(ns) and len(set(ns)) == len(ns)
    pops = [100, 1_000, 10_000, 100_000, None]
    ns = [sample_size(p, margin=0.05).n for p in pops]
    assert ns == sorted(ns)


def test_proportion_half_is_the_largest_and_symmetric():
    ps = np.linspace(0.05, 0.95, 19)
    ns = [sample_size(margin=0.02, proportion=float(p)).n for p in ps]
    assert max(ns) == sample_size(margin=0.02, proportion=0.5).n
    assert ns == ns[::-1]


def test_deff_multiplies_after_fpc_and_rounds_up():
    base = sample_size(10_000, margin=0.05)
    r = sample_size(10_000, margin=0.05, deff=2.0)
    n0 = stats.norm.ppf(0.975) ** 2 * 0.25 / 0.05**2
    n_fpc = n0 / (1 + (n0 - 1) / 10_000)
    assert r.n_fpc == base.n_fpc
    assert r.n == r.n_deff == math.ceil(2 * n_fpc)
    assert sample_size(margin=0.05, deff=2).n == math.ceil(2 * n0) == 769
    assert sample_size(margin=0.05, deff=1.5).n > sample_size(margin=0.05, deff=1.2).n


def test_never_exceeds_population():
    assert sample_size(50, margin=0.01).n == 50
    r = sample_size(400, margin=0.05, deff=3)
    assert r.n == 400 and r.n_deff > 400
    assert sample_size(1, margin=0.05).n == 1


def test_tiny_requirement_is_at_least_one_row():
    assert sample_size(margin=0.9, proportion=0.5, confidence=0.5).n == 1


def test_to_json_is_plain_and_ordered():
    r = sample_size(10_000, margin=0.05, deff=1.5)
    d = r.to_json()
    assert json.loads(json.dumps(d)) == d
    assert list(d)[:4] == ["n", "n0", "n_fpc", "n_deff"]
    assert d["population"] == 10_000 and d["deff"] == 1.5


# -- per stratum -------------------------------------------------------------
def test_per_stratum_sizes_and_total():
    r = sample_size_per_stratum({"a": 100, "b": 10_000, "c": 1_000}, margin=0.05)
    assert r.sizes == {"a": 80, "b": 370, "c": 278}
    assert r.total == 80 + 370 + 278
    assert list(r.to_json()["strata"]) == ["a", "b", "c"]
    assert r.to_json()["total"] == r.total


def test_per_stratum_values_per_stratum():
    r = sample_size_per_stratum(
        {"a": 10_000, "b": 10_000}, margin={"a": 0.05, "b": 0.1}, proportion={"a": 0.5, "b": 0.2}, deff=1.0
    )
    assert r.sizes["a"] == sample_size(10_000, margin=0.05).n
    assert r.sizes["b"] == sample_size(10_000, margin=0.1, proportion=0.2).n
    means = sample_size_per_stratum({"x": 500, "y": 5_000}, margin=1, sd={"x": 5, "y": 10})
    assert means.sizes == {"x": sample_size(500, margin=1, sd=5).n, "y": sample_size(5_000, margin=1, sd=10).n}


def test_per_stratum_errors_name_the_stratum():
    with pytest.raises(UsageError, match="missing: \\['b'\\]"):
        sample_size_per_stratum({"a": 10, "b": 10}, margin={"a": 0.05})
    with pytest.raises(UsageError, match="unknown: \\['z'\\]"):
        sample_size_per_stratum({"a": 10}, margin={"a": 0.05, "z": 0.1})
    with pytest.raises(UsageError, match="stratum 'b'.*population"):
        sample_size_per_stratum({"a": 10, "b": 0}, margin=0.05)
    with pytest.raises(UsageError, match="empty"):
        sample_size_per_stratum({}, margin=0.05)


# -- validation --------------------------------------------------------------
@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"margin": 0}, "margin must be a share in \\(0, 1\\)"),
        ({"margin": 1.0}, "margin must be a share"),
        ({"margin": -0.1}, "margin must be a share"),
        ({"margin": 0, "sd": 3}, "margin must be a positive number"),
        ({"margin": 0.05, "confidence": 1.0}, "confidence must be in \\(0, 1\\)"),
        ({"margin": 0.05, "confidence": 0}, "confidence"),
        ({"margin": 0.05, "deff": 0.5}, "deff .* must be >= 1"),
        ({"margin": 0.05, "proportion": 0.0}, "proportion must be in \\(0, 1\\)"),
        ({"margin": 0.05, "proportion": 0.5, "sd": 1.0}, "not both"),
        ({"margin": 0.05, "sd": 0}, "sd must be a positive"),
        ({"margin": 0.05, "population": 0}, "population must be a whole number >= 1"),
        ({"margin": 0.05, "population": 10.5}, "population must be a whole number"),
        ({"margin": "0.05"}, "margin must be a share"),
    ],
)
def test_bad_arguments_raise_usage_error(kwargs, match):
    with pytest.raises(UsageError, match=match):
        sample_size(**kwargs)


def test_infinite_population_spelled_inf():
    assert sample_size(math.inf, margin=0.05).n == 385


# -- simulation: the margin is met in about `confidence` of the draws -----------
def _coverage_tolerance(conf: float, reps: int) -> float:
    return 4.5 * math.sqrt(conf * (1 - conf) / reps)


@pytest.mark.parametrize("p, conf", [(0.5, 0.95), (0.3, 0.90)])
def test_simulated_srs_meets_margin_at_confidence_share(p, conf):
    big_n, margin, reps = 10_000, 0.05, 2_000
    rng = np.random.default_rng(20240611)
    population = np.zeros(big_n, dtype=np.int8)
    population[: int(p * big_n)] = 1
    n = sample_size(big_n, margin=margin, confidence=conf, proportion=p).n
    hits = np.array([population[rng.choice(big_n, n, replace=False)].mean() for _ in range(reps)])
    coverage = np.mean(np.abs(hits - p) <= margin + 1e-12)
    # exact coverage of the formula's n under SRS without replacement (hypergeometric)
    k = np.arange(n + 1)
    exact = stats.hypergeom.pmf(k, big_n, int(p * big_n), n)[np.abs(k / n - p) <= margin + 1e-12].sum()
    assert abs(exact - conf) < 0.015  # the normal approximation holds at this n
    assert abs(coverage - conf) < _coverage_tolerance(conf, reps) + abs(exact - conf)
    assert abs(coverage - exact) < _coverage_tolerance(exact, reps)


def test_simulated_mean_meets_margin():
    big_n, margin, reps, conf = 5_000, 0.25, 2_000, 0.95
    rng = np.random.default_rng(7)
    population = rng.gamma(4.0, 1.0, big_n)  # skewed; sd about 2
    sd = population.std()
    n = sample_size(big_n, margin=margin, sd=sd, confidence=conf).n
    means = np.array([population[rng.choice(big_n, n, replace=False)].mean() for _ in range(reps)])
    coverage = np.mean(np.abs(means - population.mean()) <= margin)
    assert abs(coverage - conf) < _coverage_tolerance(conf, reps) + 0.01


def test_simulated_cluster_sample_needs_the_design_effect():
    """Whole clusters of m rows with intra-cluster correlation: n = deff * n_srs rows
    meets the margin at the confidence; the SRS size alone falls well short."""
    clusters, m, rho, margin, reps, conf = 20_000, 10, 0.1, 0.05, 3_000, 0.95
    rng = np.random.default_rng(11)
    y = rng.normal(0, math.sqrt(rho), (clusters, 1)) + rng.normal(0, math.sqrt(1 - rho), (clusters, m))
    cluster_means, big_n = y.mean(axis=1), y.size
    deff = m * cluster_means.var(ddof=1) / y.var(ddof=1)  # the population's own design effect
    assert deff == pytest.approx(1 + (m - 1) * rho, rel=0.1)

    def coverage(n_rows: int) -> float:
        k = math.ceil(n_rows / m)
        est = np.array([cluster_means[rng.choice(clusters, k, replace=False)].mean() for _ in range(reps)])
        return float(np.mean(np.abs(est - y.mean()) <= margin))

    with_deff = sample_size(big_n, margin=margin, sd=y.std(), deff=deff).n
    without = sample_size(big_n, margin=margin, sd=y.std()).n
    assert abs(coverage(with_deff) - conf) < _coverage_tolerance(conf, reps) + 0.005
    expected_short = 2 * stats.norm.cdf(stats.norm.ppf(0.975) / math.sqrt(deff)) - 1  # about 0.85
    assert abs(coverage(without) - expected_short) < _coverage_tolerance(expected_short, reps) + 0.01


def test_only_the_final_size_is_rounded_up():
    r = sample_size(1007, margin=0.05, deff=1.3)
    # Rounding each stage would give ceil(279 * 1.3) = 363; the chain is rounded once.
    assert (r.n_fpc, r.n) == (279, 362) and r.n == math.ceil(r.n_deff - 1e-9) == 362
