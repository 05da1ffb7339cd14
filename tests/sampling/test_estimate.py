import numpy as np
import pyarrow as pa
import pytest

from thresher.core.selection import Selection
from thresher.data.dataset import Dataset
from thresher.errors import UsageError
from thresher.sampling.cluster import ClusterSampler
from thresher.sampling.estimate import estimate, hajek, horvitz_thompson
from thresher.sampling.pps import PPSSampler
from thresher.sampling.random import RandomSampler
from thresher.sampling.stratified import StratifiedSampler
from thresher.sampling.systematic import SystematicSampler

REPS = 800
N = 300


@pytest.fixture(scope="module")
def pool() -> Dataset:
    rng = np.random.default_rng(0)
    task = rng.choice(["a", "b", "c"], N, p=[0.5, 0.3, 0.2])
    conv = rng.integers(0, 60, N).astype(str)
    size = rng.gamma(2.0, 1.0, N)
    y = 3 * size + np.where(task == "a", 0.0, np.where(task == "b", 4.0, 9.0)) + rng.normal(0, 1, N)
    return Dataset.from_table(pa.table({"task": task, "conv": conv, "size": size, "y": y}))


DESIGNS = {
    "srs": lambda s: RandomSampler(random_state=s),
    "with_replacement": lambda s: RandomSampler(replace=True, random_state=s),
    "stratified": lambda s: StratifiedSampler(by="task", allocation="equal", random_state=s),
    "cluster": lambda s: ClusterSampler(cluster_by="conv", random_state=s),
    "two_stage": lambda s: ClusterSampler(cluster_by="conv", stages=2, rows_per_cluster=2, random_state=s),
    "poisson": lambda s: PPSSampler(size_by="size", poisson=True, random_state=s),
    "fixed_pps": lambda s: PPSSampler(size_by="size", cap=4, random_state=s),
    "systematic": lambda s: SystematicSampler(random_state=s),
}
UNBIASED_VARIANCE = {"srs", "with_replacement", "stratified", "cluster", "two_stage", "poisson"}


@pytest.mark.parametrize("design", list(DESIGNS))
def test_horvitz_thompson_is_unbiased_and_its_variance_estimate_is_calibrated(pool, design):
    truth = pool.numeric("y").sum()
    totals, variances, covered, hajek_means = [], [], 0, []
    for seed in range(REPS):
        sel = DESIGNS[design](seed).select(pool, 45)
        e = estimate(pool, sel, "y")
        totals.append(e.total)
        variances.append(e.se_total ** 2)
        covered += e.ci_total_low <= truth <= e.ci_total_high
        hajek_means.append(estimate(pool, sel, "y", estimator="hajek").mean)
    totals = np.array(totals)
    se = totals.std(ddof=1) / np.sqrt(REPS)
    assert abs(totals.mean() - truth) <= 4 * se, (totals.mean(), truth, se)
    ratio = np.mean(variances) / totals.var(ddof=1)
    if design in UNBIASED_VARIANCE:
        assert abs(ratio - 1) < 4 * np.sqrt(2 / REPS) + 0.05, ratio
    elif design == "fixed_pps":  # Hájek/Deville approximation without joint probabilities
        assert 0.6 < ratio < 1.6, ratio
    else:  # systematic: the SRS formula is only an approximation (few distinct samples)
        assert 0.4 < ratio < 2.5, ratio
    assert covered / REPS > 0.85
    # Hájek's ratio estimator is only approximately unbiased: allow a small bias.
    hm = np.array(hajek_means)
    assert abs(hm.mean() - truth / N) <= 4 * hm.std(ddof=1) / np.sqrt(REPS) + 0.01 * truth / N


def test_srs_formulas_by_hand():
    y = np.array([1.0, 4.0, 2.0, 8.0])
    pi = np.full(4, 0.4)  # n = 4 of N = 10
    e = horvitz_thompson(y, pi, design="srs", pool_size=10)
    assert e.total == pytest.approx(10 / 4 * y.sum()) and e.mean == pytest.approx(y.mean())
    assert e.se_total ** 2 == pytest.approx(100 * (1 - 0.4) * y.var(ddof=1) / 4)
    assert e.df == 3 and e.ci_low == pytest.approx(e.mean - 3.1824463 * e.se_mean, abs=1e-6)  # t, 3 df
    h = hajek(y, pi, design="srs", pool_size=10)
    assert h.mean == pytest.approx(e.mean) and h.se_mean == pytest.approx(e.se_mean)


def test_stratified_and_poisson_formulas_by_hand():
    y = np.array([1.0, 3.0, 10.0, 14.0, 12.0])
    strata = np.array(["a", "a", "b", "b", "b"])
    pi = np.array([0.5, 0.5, 0.3, 0.3, 0.3])  # N_a = 4, N_b = 10
    e = horvitz_thompson(y, pi, design="stratified", strata=strata)
    assert e.total == pytest.approx(4 * 2 + 10 * 12) and e.pool_size == pytest.approx(14)
    var = 16 * (1 - 0.5) * np.var([1, 3], ddof=1) / 2 + 100 * (1 - 0.3) * np.var([10, 14, 12], ddof=1) / 3
    assert e.se_total ** 2 == pytest.approx(var)
    p = horvitz_thompson(y, pi, design="poisson", pool_size=14)
    assert p.se_total ** 2 == pytest.approx(((1 - pi) * (y / pi) ** 2).sum())


def test_fixed_size_approximation_has_no_variance_from_certainty_units():
    y = np.array([100.0, 5.0, 7.0, 6.0])
    pi = np.array([1.0, 0.5, 0.5, 0.5])
    with_certain = horvitz_thompson(y, pi, design="fixed", pool_size=7)
    without = horvitz_thompson(y[1:], pi[1:], design="fixed", pool_size=6)
    assert with_certain.se_total == pytest.approx(without.se_total)


def test_errors(pool):
    sel = RandomSampler(random_state=0).select(pool, 10)
    with pytest.raises(UsageError, match="must be numeric"):
        estimate(pool, sel, "task")
    with pytest.raises(UsageError, match="estimator"):
        estimate(pool, sel, "y", estimator="mle")
    det = Selection(indices=[0, 1], pi=[np.nan, np.nan], weights=[np.nan, np.nan], method="deita", params={},
                    seed=None, pool_size=N)
    with pytest.raises(UsageError, match="no inclusion probabilities"):
        estimate(pool, det, "y")
    with pytest.raises(UsageError, match="design must be one of"):
        horvitz_thompson([1.0], [0.5], design="magic")
    with pytest.raises(UsageError, match=r"\(0, 1\]"):
        horvitz_thompson([1.0], [1.5])
    with pytest.raises(UsageError, match="needs strata"):
        horvitz_thompson([1.0], [0.5], design="stratified")
    gaps = Dataset.from_table(pa.table({"y": [1.0, None, 3.0]}))
    with pytest.raises(UsageError, match="missing for 1 selected rows"):
        estimate(gaps, RandomSampler(random_state=0).select(gaps, 3), "y")


def test_to_json_is_plain(pool):
    e = estimate(pool, StratifiedSampler(by="task", random_state=0).select(pool, 30), "y")
    out = e.to_json()
    assert out["design"] == "stratified" and isinstance(out["total"], float) and out["n"] == 30


def test_t_intervals_keep_nominal_coverage_with_16_clusters():
    """16 of 200 equal clusters with a strong cluster effect: z intervals cover
    about 93%; t intervals at m - 1 = 15 df are nominal."""
    reps, big_m = 1500, 200
    rng = np.random.default_rng(1)
    conv = np.repeat(np.arange(big_m), 20)
    y = 3 * rng.normal(0, 1, big_m)[conv] + rng.normal(0, 1, len(conv))
    ds = Dataset.from_table(pa.table({"conv": conv.astype(str), "y": y}))
    covered_t = covered_z = 0
    for seed in range(reps):
        e = estimate(ds, ClusterSampler(cluster_by="conv", random_state=seed).select(ds, 320), "y")
        assert e.df == 15
        covered_t += e.ci_low <= y.mean() <= e.ci_high
        covered_z += abs(e.mean - y.mean()) <= 1.959964 * e.se_mean
    tol = 3.5 * np.sqrt(0.95 * 0.05 / reps)
    assert abs(covered_t / reps - 0.95) < tol, covered_t / reps
    assert covered_z < covered_t


def test_degrees_of_freedom_by_design(pool):
    strat = estimate(pool, StratifiedSampler(by="task", random_state=0).select(pool, 30), "y")
    assert strat.df == 30 - 3
    assert estimate(pool, RandomSampler(random_state=0).select(pool, 30), "y").df == 29
    two = ClusterSampler(cluster_by="conv", stages=2, rows_per_cluster=2, random_state=0).select(pool, 40)
    assert estimate(pool, two, "y").df == two.diagnostics["clusters_selected"] - 1
