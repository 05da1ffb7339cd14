"""Cold start: k-means medoids are the rows nearest the centers and cover the clusters;
a stratified seed set covers every stratum."""
import numpy as np
import pytest

from thresher.active.coldstart import cold_start, kmeans_medoids, random_seed, stratified_seed
from thresher.data.dataset import Dataset
from thresher.errors import UsageError


def blobs(sizes=(60, 30, 15, 8), d=5, seed=0):
    rng = np.random.default_rng(seed)
    centers = rng.normal(0, 20, size=(len(sizes), d))
    y = np.repeat(np.arange(len(sizes)), sizes)
    return (centers[y] + rng.normal(0, 1, size=(len(y), d))).astype(np.float32), y


def test_medoids_cover_every_cluster_and_are_nearest_to_the_centers():
    X, y = blobs()
    picks = kmeans_medoids(X, 4, random_state=0)
    assert sorted(y[picks].tolist()) == [0, 1, 2, 3]  # one per (well-separated) blob
    for p in picks:
        members = X[y == y[p]]
        center = members.mean(axis=0)  # k-means recovers the blobs, so this is its center
        nearest = np.argmin(((X - center) ** 2).sum(axis=1))
        assert p == nearest
    assert y[picks[0]] == 0  # largest cluster first


def test_medoids_are_distinct_even_with_many_centers():
    X, _ = blobs(sizes=(10, 10, 10))
    picks = kmeans_medoids(X, 25, random_state=1)
    assert len(np.unique(picks)) == 25


def test_medoids_are_seeded():
    X, _ = blobs()
    assert kmeans_medoids(X, 6, random_state=3).tolist() == kmeans_medoids(X, 6, random_state=3).tolist()


def test_stratified_seed_covers_every_stratum():
    cats = ["a"] * 90 + ["b"] * 8 + ["c"] * 2
    ds = Dataset.from_records([{"instruction": f"q{i}", "output": f"a{i}", "category": c} for i, c in enumerate(cats)])
    for seed in range(5):
        picks = stratified_seed(ds, "category", 6, random_state=seed)
        assert len(picks) == 6 and len(np.unique(picks)) == 6
        assert {cats[i] for i in picks} == {"a", "b", "c"}
    with pytest.raises(UsageError, match="at least one row per stratum"):
        stratified_seed(ds, "category", 2)


def test_random_seed_and_dispatch():
    a = random_seed(50, 10, random_state=4)
    assert len(np.unique(a)) == 10 and a.max() < 50
    assert a.tolist() == cold_start("random", 10, n=50, random_state=4).tolist()
    with pytest.raises(UsageError, match="unknown cold start"):
        cold_start("bogus", 3, n=10)
    with pytest.raises(UsageError, match="--by"):
        cold_start("stratified", 3, n=10)
    with pytest.raises(UsageError, match="cannot pick"):
        random_seed(5, 6)
