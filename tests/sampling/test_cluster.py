import numpy as np
import pyarrow as pa
import pytest

from thresher.data.dataset import Dataset
from thresher.errors import UsageError
from thresher.sampling.cluster import ClusterSampler, clusters_needed, design_effect, icc_anova

REPS = 2000
SIZES = [1, 2, 3, 3, 4, 5, 6, 8, 2, 7, 1, 4]  # 12 clusters, 46 rows


def assert_inclusion(counts, pi, reps, z=4.5):
    counts, pi = np.asarray(counts, dtype=float), np.asarray(pi, dtype=float)
    tol = z * np.sqrt(pi * (1 - pi) / reps) + 0.5 / reps
    dev = np.abs(counts / reps - pi)
    bad = dev > tol
    assert not bad.any(), f"rows {np.flatnonzero(bad)[:5]}: freq {counts[bad][:5] / reps} vs pi {pi[bad][:5]}"


def clustered_pool(seed: int = 0) -> tuple[Dataset, np.ndarray]:
    rng = np.random.default_rng(seed)
    conv = np.repeat([f"c{i:02d}" for i in range(len(SIZES))], SIZES)
    perm = rng.permutation(len(conv))
    conv = conv[perm]
    return Dataset.from_table(pa.table({"conv": conv, "y": rng.normal(size=len(conv))})), conv


def test_one_stage_takes_whole_clusters_with_pi_m_over_big_m():
    ds, conv = clustered_pool()
    big_n, big_m = len(conv), len(SIZES)
    n = 12
    m = int(np.floor(n * big_m / big_n + 0.5))  # the documented rule: round(n·M/N)
    counts = np.zeros(big_n)
    for seed in range(REPS):
        sel = ClusterSampler(cluster_by="conv", random_state=seed).select(ds, n)
        chosen = np.unique(conv[sel.indices])
        assert len(chosen) == m
        assert len(sel) == np.isin(conv, chosen).sum()  # every row of each chosen cluster
        counts[sel.indices] += 1
    assert_inclusion(counts, np.full(big_n, m / big_m), REPS)
    assert np.allclose(sel.pi, m / big_m) and np.array_equal(sel.labels["cluster"], conv[sel.indices])
    assert sel.diagnostics["clusters_selected"] == m and sel.diagnostics["clusters_pool"] == big_m
    assert sorted(r["stratum"] for r in sel.strata) == sorted(chosen.tolist())


def test_two_stage_inclusion_frequency_of_every_row():
    ds, conv = clustered_pool(1)
    sampler = ClusterSampler(cluster_by="conv", stages=2, rows_per_cluster=3)
    pi = sampler.inclusion_probabilities(ds, 10)
    sizes = dict(zip(*np.unique(conv, return_counts=True)))
    k = np.array([min(3, sizes[c]) for c in conv])
    n_i = np.array([sizes[c] for c in conv])
    m = int(np.floor(10 / np.minimum(SIZES, 3).mean() + 0.5))
    assert np.allclose(pi, m / len(SIZES) * k / n_i)
    counts = np.zeros(len(conv))
    for seed in range(REPS):
        sel = ClusterSampler(cluster_by="conv", stages=2, rows_per_cluster=3, random_state=seed).select(ds, 10)
        got = dict(zip(*np.unique(conv[sel.indices], return_counts=True)))
        assert len(got) == m and all(v == min(3, sizes[c]) for c, v in got.items())
        counts[sel.indices] += 1
    assert_inclusion(counts, pi, REPS)
    assert np.allclose(sel.weights, 1 / sel.pi)


def test_icc_anova_recovers_a_planted_correlation():
    rng = np.random.default_rng(2)
    big_m, size, rho = 500, 12, 0.3
    codes = np.repeat(np.arange(big_m), size)
    y = rng.normal(0, np.sqrt(rho), big_m)[codes] + rng.normal(0, np.sqrt(1 - rho), big_m * size)
    est = icc_anova(y, codes)
    # SE of the ANOVA ICC ~ (1-rho)(1+(k-1)rho) sqrt(2/(k(k-1)(M-1))) ~ 0.026 here.
    se = (1 - rho) * (1 + (size - 1) * rho) * np.sqrt(2 / (size * (size - 1) * (big_m - 1)))
    assert abs(est - rho) < 4.5 * se
    assert abs(icc_anova(rng.normal(size=big_m * size), codes)) < 4.5 * np.sqrt(2 / (size * (size - 1) * (big_m - 1)))
    assert icc_anova(np.arange(3.0), np.zeros(3, dtype=int)) is None  # one cluster


def test_design_effect_diagnostics_and_clusters_needed():
    rng = np.random.default_rng(3)
    big_m, size = 200, 10
    conv = np.repeat(np.arange(big_m), size).astype(str)
    y = rng.normal(0, 1, big_m)[np.repeat(np.arange(big_m), size)] + rng.normal(0, 1, big_m * size)
    ds = Dataset.from_table(pa.table({"conv": conv, "y": y}))
    sel = ClusterSampler(cluster_by="conv", icc_of="y", random_state=0).select(ds, 300)
    d = sel.diagnostics
    assert d["clusters_selected"] == 30 and len(sel) == 300 and d["mean_cluster_size"] == 10
    assert 0.3 < d["icc"] < 0.7
    assert d["design_effect"] == pytest.approx(1 + 9 * d["icc"])
    assert d["effective_n"] == pytest.approx(300 / d["design_effect"])
    need = d["clusters_for_target"]["clusters"]
    assert need == clusters_needed(300, 10, d["icc"]) and need * 10 / d["design_effect"] >= 300 - 1e-9
    assert (need - 1) * 10 / d["design_effect"] < 300 and "note" in d
    assert design_effect(10, 0.0) == 1 and clusters_needed(100, 5, 0.0) == 20


def test_same_seed_same_selection_different_seed_differs():
    ds, _ = clustered_pool()
    a = ClusterSampler(cluster_by="conv", random_state=3).select(ds, 15)
    b = ClusterSampler(cluster_by="conv", random_state=3).select(ds, 15)
    c = [ClusterSampler(cluster_by="conv", random_state=s).select(ds, 15).indices for s in range(4, 8)]
    assert np.array_equal(a.indices, b.indices)
    assert any(not np.array_equal(a.indices, x) for x in c)


@pytest.mark.parametrize("kwargs, match", [
    ({"cluster_by": ""}, "cluster_by"),
    ({"cluster_by": "conv", "stages": 3}, "stages"),
    ({"cluster_by": "conv", "stages": 2}, "needs rows_per_cluster"),
    ({"cluster_by": "conv", "rows_per_cluster": 3}, "only applies to stages=2"),
    ({"cluster_by": "conv", "stages": 2, "rows_per_cluster": 0}, "rows_per_cluster"),
])
def test_constructor_validation(kwargs, match):
    with pytest.raises(UsageError, match=match):
        ClusterSampler(**kwargs)


def test_data_errors():
    ds, _ = clustered_pool()
    with pytest.raises(UsageError, match="cannot draw 100 rows without replacement from a pool of 46"):
        ClusterSampler(cluster_by="conv").select(ds, 100)
    with pytest.raises(UsageError, match="must be numeric"):
        ClusterSampler(cluster_by="conv", icc_of="conv").select(ds, 10)
