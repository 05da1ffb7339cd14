"""k-means clusters: planted clusters recovered, deterministic per seed."""
from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from thresher.data.dataset import Dataset
from thresher.errors import UsageError
from thresher.features import registry
from thresher.features.base import Featurizer
from thresher.features.clusters import KMeansClusters, choose_k, kmeans_clusters
from thresher.features.embeddings import to_arrow
from thresher.features.store import FeatureStore


def blobs(n_per=60, k=4, d=16, spread=0.05, seed=0):
    rng = np.random.default_rng(seed)
    centres = np.eye(d)[:k] * 3
    truth = np.repeat(np.arange(k), n_per)
    x = centres[truth] + spread * rng.standard_normal((len(truth), d))
    order = rng.permutation(len(truth))
    return x[order].astype(np.float32), truth[order]


def test_planted_clusters_are_recovered():
    from sklearn.metrics import adjusted_rand_score

    x, truth = blobs()
    labels, dist = kmeans_clusters(x, k=4, random_state=0)
    assert adjusted_rand_score(truth, labels) == 1.0
    assert labels.dtype == np.int32 and dist.dtype == np.float32
    xn = x / np.linalg.norm(x, axis=1, keepdims=True)
    centres = np.stack([xn[labels == c].mean(axis=0) for c in range(4)])
    # MiniBatchKMeans centres are close to (not exactly) the cluster means
    np.testing.assert_allclose(dist, np.linalg.norm(xn - centres[labels], axis=1), atol=0.02)
    assert dist.max() < 0.2


def test_deterministic_per_seed():
    x, _ = blobs(n_per=80, k=6, spread=0.8, seed=3)  # overlapping: seeds can disagree
    a = kmeans_clusters(x, k=6, random_state=7)
    b = kmeans_clusters(x, k=6, random_state=7)
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    runs = {kmeans_clusters(x, k=6, random_state=s)[0].tobytes() for s in range(6)}
    assert len(runs) > 1  # the seed does matter on hard data


def test_labels_ordered_by_cluster_size():
    x, truth = blobs(n_per=10, k=3)
    x = np.concatenate([x, x[truth == 2], x[truth == 2], x[truth == 1]])
    labels, _ = kmeans_clusters(x, k=3)
    sizes = np.bincount(labels)
    assert list(sizes) == sorted(sizes, reverse=True) == [30, 20, 10]


def test_choose_k_rule():
    assert choose_k(200) == 10  # round(sqrt(100))
    assert choose_k(1) == 1 and choose_k(3) == 1
    assert choose_k(10**7) == 256
    assert choose_k(10**7, max_k=50) == 50
    assert choose_k(5, k=20) == 5  # never more clusters than rows


def test_degenerate_inputs():
    assert [a.size for a in kmeans_clusters(np.zeros((0, 4)))] == [0, 0]
    labels, dist = kmeans_clusters(np.ones((1, 4)))
    assert labels.tolist() == [0] and dist.tolist() == [0.0]
    labels, _ = kmeans_clusters(np.ones((5, 4)), k=3)  # fewer distinct points than clusters
    assert len(set(labels.tolist())) == 1
    with pytest.raises(UsageError):
        kmeans_clusters(np.ones(4))


class FakeEmbedding(Featurizer):
    """Deterministic 'embeddings' from the prompt's first letter (for the store test)."""

    name = "fake_embed"
    output_columns = ("fake_embedding",)

    def __init__(self):
        pass

    def compute(self, batch):
        first = np.array([ord(p[0]) - ord("a") for p in batch.column("prompt").to_pylist()])
        return {"fake_embedding": to_arrow(np.eye(8, dtype=np.float32)[first])}


def test_featurizer_through_the_store(tmp_path, monkeypatch):
    monkeypatch.setitem(registry.FEATURIZERS, "fake_embed", FakeEmbedding)
    letters = "abcabcabcd" * 3
    ds = Dataset.from_records([{"instruction": f"{c} {i}", "output": "x"} for i, c in enumerate(letters)])
    f = KMeansClusters(k=4, embedding="fake_embed")
    assert f.scope == "global" and f.depends_on()[0].name == "fake_embed"
    table = FeatureStore(tmp_path, chunk_rows=4).get(ds, f)
    labels = table.column("cluster").to_numpy()
    for c in "abcd":
        rows = [i for i, x in enumerate(letters) if x == c]
        assert len(set(labels[rows])) == 1
    assert len(set(labels)) == 4 and labels[letters.index("d")] == 3  # smallest cluster last
    np.testing.assert_allclose(table.column("cluster_distance").to_numpy(), 0, atol=1e-6)


def test_validation():
    for bad in ({"k": 0}, {"max_k": -1}, {"random_state": -1}, {"embedding": ""}, {"n_init": 0}):
        with pytest.raises(UsageError):
            KMeansClusters(**bad)
    with pytest.raises(UsageError, match="unknown feature"):
        KMeansClusters(embedding="nope").depends_on()
    with pytest.raises(UsageError, match="embedding column"):
        KMeansClusters().compute(pa.table({"x": [1]}))
