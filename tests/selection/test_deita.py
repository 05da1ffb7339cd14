import numpy as np
import pyarrow as pa
import pytest

from thresher.core.budget import Budget
from thresher.data.dataset import Dataset
from thresher.errors import UsageError
from thresher.selection.deita import DeitaSelector, deita_select


def plain_loop(emb, scores, threshold, max_rows=None, tokens=None, max_tokens=None):
    """The DEITA walk written the obvious way: the reference for exactness."""
    emb = np.asarray(emb, dtype=np.float32)
    order = np.argsort(-np.asarray(scores, dtype=np.float64), kind="stable")
    kept = np.empty((len(emb), emb.shape[1]), dtype=np.float32)
    n, used, out = 0, 0.0, []
    for i in order:
        if max_rows is not None and n >= max_rows:
            break
        if n and (kept[:n] @ emb[i]).max() >= threshold:
            continue
        if max_tokens is not None:
            if used + tokens[i] > max_tokens:
                break
            used += tokens[i]
        kept[n] = emb[i]
        n += 1
        out.append(i)
    return np.asarray(out, dtype=np.int64)


def unit(x):
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def clustered(n, d, clusters, noise, seed):
    """Near-duplicate clusters: the redundant regime."""
    rng = np.random.default_rng(seed)
    centers = unit(rng.standard_normal((clusters, d)))
    labels = rng.integers(0, clusters, n)
    return unit(centers[labels] + noise * rng.standard_normal((n, d))), rng.random(n)


@pytest.mark.parametrize("block,sub", [(4096, 1024), (257, 64), (33, 7), (1, 1)])
def test_redundant_regime_identical_to_plain_loop(block, sub):
    # d = 64 and > 128 kept rows: the witness sketch is used.
    emb, scores = clustered(3000, 64, 300, noise=0.03, seed=1)
    ref = plain_loop(emb, scores, 0.9)
    res = deita_select(emb, scores, 0.9, block_size=block, sub_block=sub)
    assert np.array_equal(res.indices, ref)
    assert 250 <= len(ref) <= 400  # mostly one row per cluster
    assert len(res.walked) == 3000 and res.redundant == 3000 - len(ref) and res.stopped == "pool"


@pytest.mark.parametrize("threshold", [0.5, 0.8, 0.95, 0.999])
def test_mixed_regime_with_row_budget_identical(threshold):
    # Loose clusters: similarities spread over the threshold, many sub-block hits.
    emb, scores = clustered(1200, 96, 120, noise=0.09, seed=2)
    scores = np.round(scores * 20)  # many ties: pool order must break them
    for budget in (1, 37, 400, 2000):
        ref = plain_loop(emb, scores, threshold, max_rows=budget)
        res = deita_select(emb, scores, threshold, max_rows=budget, block_size=300, sub_block=50)
        assert np.array_equal(res.indices, ref), (threshold, budget)
        assert len(res.indices) <= budget


def test_exact_duplicates_and_near_threshold_pairs_identical():
    rng = np.random.default_rng(3)
    d = 64
    base = unit(rng.standard_normal((1, d)))[0]
    ortho = rng.standard_normal((400, d))
    ortho -= np.outer(ortho @ base, base)
    ortho = unit(ortho)
    # Cosines to `base` within float32 rounding of the threshold.
    c = 0.9 + rng.uniform(-4e-7, 4e-7, 400)
    near = unit(c[:, None] * base + np.sqrt(1 - c**2)[:, None] * ortho)
    dups = np.repeat(near[:50], 3, axis=0)
    emb = np.vstack([base[None], near, dups])
    scores = np.r_[10.0, rng.random(len(emb) - 1)]
    ref = plain_loop(emb, scores, 0.9)
    res = deita_select(emb, scores, 0.9, block_size=64, sub_block=16)
    assert np.array_equal(res.indices, ref)
    assert res.exact_checks > 0  # the rounding zone was exercised
    assert 0 < len(ref) < len(emb)


def test_ties_keep_pool_order():
    emb = unit(np.eye(5, dtype=np.float32) + 0.01)
    res = deita_select(emb, np.zeros(5), 0.9, max_rows=3)
    assert res.indices.tolist() == [0, 1, 2] and res.stopped == "budget"


def test_token_budget_stops_at_first_overflow_and_matches_loop():
    emb, scores = clustered(2000, 64, 400, noise=0.05, seed=4)
    tokens = np.random.default_rng(5).integers(1, 200, len(emb)).astype(float)
    for max_tokens in (0, 150, 5000, 40000, 1e9):
        ref = plain_loop(emb, scores, 0.9, tokens=tokens, max_tokens=max_tokens)
        res = deita_select(emb, scores, 0.9, tokens=tokens, max_tokens=max_tokens, block_size=128, sub_block=32)
        assert np.array_equal(res.indices, ref)
        assert tokens[res.indices].sum() <= max_tokens
        assert res.tokens_used == tokens[res.indices].sum()


def test_unnormalised_rows_are_normalised():
    emb, scores = clustered(500, 64, 50, noise=0.05, seed=6)
    scale = np.random.default_rng(7).uniform(0.1, 10, (len(emb), 1)).astype(np.float32)
    assert np.array_equal(deita_select(emb * scale, scores, 0.9).indices, plain_loop(emb, scores, 0.9))


def pool(n=300, seed=8):
    emb, _ = clustered(n, 64, 30, noise=0.04, seed=seed)
    rng = np.random.default_rng(seed)
    table = pa.table({"instruction": [f"q{i}" for i in range(n)], "output": [f"a{i}" for i in range(n)],
                      "quality": rng.uniform(1, 5, n), "complexity": rng.uniform(1, 5, n)})
    return Dataset.from_table(table), emb


def test_selector_product_score_and_selection_record():
    ds, emb = pool()
    q, c = ds.numeric("quality"), ds.numeric("complexity")
    sel = DeitaSelector(score="complexity * quality", threshold=0.9).select(ds, Budget("rows", 20),
                                                                            {"embedding": emb})
    assert np.array_equal(sel.indices, plain_loop(emb, q * c, 0.9, max_rows=20))
    assert np.all(np.diff((q * c)[sel.indices]) <= 0)  # walk order: score descending
    assert np.isnan(sel.pi).all() and np.isnan(sel.weights).all()
    assert sel.method == "deita" and sel.params["score"] == "complexity * quality"
    assert sel.diagnostics["kept"] == 20 and sel.diagnostics["stopped"] == "budget"
    # Every other row is accounted for in the trace: redundant, or never reached.
    redundant, unreached = sel.removed.values()
    assert len(redundant) == sel.diagnostics["redundant"] == sel.diagnostics["walked"] - 20
    assert len(redundant) + len(unreached) + 20 == len(ds)
    assert np.all((emb[redundant] @ emb[sel.indices].T).max(axis=1) >= 0.9 - 1e-6)
    # Scores may come from features too, and a fraction budget works.
    frac = DeitaSelector(score="s").select(ds, Budget("fraction", 0.5), {"embedding": emb, "s": q})
    assert np.array_equal(frac.indices, plain_loop(emb, q, 0.9, max_rows=150))
    assert frac.diagnostics["stopped"] == "pool"  # only ~30 clusters: the budget cannot be filled
    # No budget: a diversity filter over the whole pool.
    everything = DeitaSelector(score="s").select(ds, None, {"embedding": emb, "s": q})
    assert np.array_equal(everything.indices, plain_loop(emb, q, 0.9))


def test_selector_token_budget_never_exceeded():
    ds, emb = pool()
    tokens = np.random.default_rng(9).integers(5, 50, len(ds))
    sel = DeitaSelector(score="quality").select(ds, Budget("tokens", 300), {"embedding": emb, "tokens": tokens})
    assert tokens[sel.indices].sum() <= 300 and len(sel) > 0
    assert sel.diagnostics["tokens_used"] == tokens[sel.indices].sum()


def test_errors_are_actionable():
    ds, emb = pool(20)
    with pytest.raises(UsageError, match="threshold"):
        DeitaSelector(threshold=1.5)
    with pytest.raises(UsageError, match="product of field names"):
        DeitaSelector(score="quality*")
    with pytest.raises(UsageError, match="no embedding 'embedding'"):
        DeitaSelector(score="quality").select(ds, 5)
    with pytest.raises(UsageError, match="unknown feature or field 'nope'"):
        DeitaSelector(score="nope").select(ds, 5, {"embedding": emb})
    q = ds.numeric("quality").copy()
    q[3] = np.nan
    with pytest.raises(UsageError, match="first at row 4"):
        DeitaSelector(score="q").select(ds, 5, {"embedding": emb, "q": q})
    with pytest.raises(UsageError, match="tokens"):
        DeitaSelector(score="quality").select(ds, Budget("tokens", 10), {"embedding": emb})
    bad = emb.copy()
    bad[7, 0] = np.nan
    with pytest.raises(UsageError, match="row 7"):
        deita_select(bad, np.arange(20.0)[::-1], 0.9)
