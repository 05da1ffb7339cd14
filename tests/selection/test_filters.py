"""quality / dedup / ifd selectors on small data with known answers."""
import numpy as np
import pytest

from thresher.core.budget import Budget
from thresher.data.dataset import Dataset
from thresher.errors import UsageError
from thresher.selection.dedup import DedupSelector, keep_one_per_group, semantic_groups
from thresher.selection.ifd import IFDSelector
from thresher.selection.quality import QualityFilter


def _ds(n):
    return Dataset.from_records([{"instruction": f"q{i}", "output": f"a{i}"} for i in range(n)])


def test_quality_reasons_per_clause():
    feats = {"response_words": np.array([0, 5, 2, 7]), "ifd": np.array([0.5, 1.2, 0.3, np.nan])}
    sel = QualityFilter("response_words >= 3 and ifd < 1").select(_ds(4), None, feats)
    assert sel.indices.tolist() == []  # row 1 fails ifd, row 3 has NaN ifd
    assert {k: v.tolist() for k, v in sel.removed.items()} == {"fails response_words >= 3": [0, 2],
                                                               "fails ifd < 1": [1, 3]}
    sel = QualityFilter("response_words >= 3 or ifd < 0.4").select(_ds(4), None, feats)
    assert sel.indices.tolist() == [1, 2, 3]


def test_quality_rejects_code():
    with pytest.raises(UsageError):
        QualityFilter("__import__('os').system('x')")
    with pytest.raises(UsageError):
        QualityFilter("a >")
    assert QualityFilter("not empty_response and chars < 10").requires == ["chars", "empty_response"]


def test_keep_one_per_group_policies():
    groups = np.array([0, 1, 0, 2, 1, 0])
    assert keep_one_per_group(groups, np.zeros(6)).tolist() == [0, 1, 3]
    assert keep_one_per_group(groups, np.array([1, 1, 5, 0, 9, 5.0])).tolist() == [2, 3, 4]


def test_dedup_exact_and_longest():
    feats = {"exact_hash": np.array([7, 8, 7, 7, 9], dtype=np.uint64), "chars": np.array([3, 4, 10, 2, 1])}
    sel = DedupSelector(kind="exact", keep="longest").select(_ds(5), None, feats)
    assert sel.indices.tolist() == [1, 2, 4]
    assert sel.removed["exact duplicate"].tolist() == [0, 3]


def test_semantic_groups_link_within_clusters_only():
    rng = np.random.default_rng(0)
    base = rng.normal(size=(3, 16))
    emb = np.vstack([base[0], base[0] + 0.01, base[1], base[2], base[2] + 0.01])
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    clusters = np.array([0, 0, 0, 1, 2])  # the last pair is split across clusters: not linked
    g = semantic_groups(emb.astype(np.float32), clusters, 0.95)
    assert g[0] == g[1] and g[2] != g[0] and g[3] != g[4]


def test_ifd_drops_ge_one_and_ranks():
    feats = {"ifd": np.array([0.9, 1.5, 0.2, np.nan, 0.95]), "tokens": np.array([10, 10, 10, 10, 10])}
    sel = IFDSelector().select(_ds(5), Budget.parse(n=2), feats)
    assert sel.indices.tolist() == [4, 0]
    assert sel.removed["ifd >= 1"].tolist() == [1]
    sel = IFDSelector().select(_ds(5), Budget.parse(tokens=25), feats)
    assert sel.indices.tolist() == [4, 0]  # a token budget is never exceeded


def test_superfilter_top_fraction_then_facility():
    from thresher.selection.ifd import SuperfilterSelector

    rng = np.random.default_rng(0)
    n = 40
    ifd = np.r_[np.linspace(0.1, 0.95, n - 2), 1.2, np.nan]
    emb = rng.normal(size=(n, 8)).astype(np.float32)
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    feats = {"ifd": ifd, "embedding": emb, "tokens": np.full(n, 10)}
    sel = SuperfilterSelector(top_fraction=0.25, random_state=0).select(_ds(n), Budget.parse(n=4), feats)
    top = set(np.argsort(-np.nan_to_num(np.where(ifd < 1, ifd, -1), nan=-1))[:10].tolist())
    assert len(sel.indices) == 4 and set(sel.indices.tolist()) <= top
    assert "ifd >= 1" in sel.removed and sel.removed["ifd >= 1"].tolist() == [n - 2]
    with pytest.raises(UsageError):
        SuperfilterSelector(top_fraction=0.05).select(_ds(n), Budget.parse(n=10), feats)
