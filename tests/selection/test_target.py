import itertools
import json

import numpy as np
import pyarrow as pa
import pytest

from thresher.core.budget import Budget
from thresher.data.dataset import Dataset
from thresher.errors import UsageError
from thresher.selection.target import (
    TargetSelector,
    dsir_log_weights,
    gumbel_top_k,
    hashed_ngrams,
    target_similarity,
)

COOKING = ("flour sugar butter oven bake whisk dough recipe egg milk simmer boil pan salt pepper "
           "garlic onion roast knead yeast").split()
CODING = ("python function variable loop compile array class method debug server import module "
          "string integer return lambda thread socket parser").split()
SHARED = "the a of and to in is how what why please explain with for my".split()


def sentences(vocab, n, rng, words=12):
    pick = lambda: [vocab[i] if rng.random() < 0.6 else SHARED[rng.integers(len(SHARED))]  # noqa: E731
                    for i in rng.integers(0, len(vocab), words)]
    return [" ".join(pick()) for _ in range(n)]


def two_domain_pool(n_each=150, seed=0):
    rng = np.random.default_rng(seed)
    a, b = sentences(COOKING, n_each, rng), sentences(CODING, n_each, rng)
    domain = np.array([0] * n_each + [1] * n_each)
    perm = rng.permutation(2 * n_each)
    records = [{"instruction": (a + b)[i].split(" ", 6)[-1], "input": "", "output": (a + b)[i],
                "domain": "AB"[domain[i]]} for i in perm]
    return Dataset.from_records(records), domain[perm]


def test_hashed_ngrams_counts_and_stability():
    texts = pa.array(["Hello, World!  hello", "", None, "one"])
    rows, buckets = hashed_ngrams(texts, 2, 1000)
    # 3 unigrams + 2 bigrams for row 0, nothing for empty/null rows, 1 unigram for row 3.
    assert np.bincount(rows, minlength=4).tolist() == [5, 0, 0, 1]
    assert buckets.min() >= 0 and buckets.max() < 1000
    # "hello" hashes the same wherever it occurs; the bigram depends on context.
    again_rows, again = hashed_ngrams(pa.array(["say hello world"]), 2, 1000)
    assert set(buckets[rows == 0][:1]) <= set(again) and buckets[0] == buckets[2]
    rows3, _ = hashed_ngrams(pa.array(["a b c d"]), 3, 1000)
    assert len(rows3) == 4 + 3 + 2


def test_dsir_weights_favour_target_domain():
    rng = np.random.default_rng(1)
    pool = pa.array(sentences(COOKING, 100, rng) + sentences(CODING, 100, rng) + [""])
    target = pa.array(sentences(COOKING, 30, rng))
    log_w, model = dsir_log_weights(pool, target, 2, 4096)
    auc = np.mean(log_w[:100, None] > log_w[None, 100:200])  # P(a cooking row outweighs a coding row)
    assert auc > 0.99
    assert log_w[200] == 0.0  # no n-grams: weight 1
    assert model.kl_pool > 0


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_dsir_picks_target_domain_rows(seed):
    ds, domain = two_domain_pool()
    target = sentences(COOKING, 40, np.random.default_rng(100 + seed))
    sel = TargetSelector(target, method="dsir", random_state=seed).select(ds, Budget("rows", 100))
    assert len(sel) == 100 and len(np.unique(sel.indices)) == 100
    assert np.mean(domain[sel.indices] == 0) >= 0.9
    assert np.isnan(sel.pi).all() and np.isnan(sel.weights).all()
    d = sel.diagnostics
    assert d["kl_reduction"] > 0 and d["target_rows"] == 40
    assert d["log_weight_selected"]["median"] > d["log_weight_pool"]["median"]


def test_dsir_is_deterministic_per_seed_and_temperature_flattens():
    ds, domain = two_domain_pool()
    target = sentences(COOKING, 40, np.random.default_rng(7))
    def run(seed, t=1.0):
        return TargetSelector(target, random_state=seed, temperature=t).select(ds, 60).indices

    assert np.array_equal(run(3), run(3))
    assert not np.array_equal(run(3), run(4))
    # A huge temperature makes the draw nearly uniform: about half from each domain.
    hot = np.concatenate([run(s, 1e6) for s in range(10)])
    assert 0.35 < np.mean(domain[hot] == 0) < 0.65


def exact_successive_inclusion(w, k):
    """Inclusion probabilities of k draws without replacement, each ∝ w among the rest."""
    w = np.asarray(w, dtype=float)
    pi = np.zeros(len(w))
    for seq in itertools.permutations(range(len(w)), k):
        p, left = 1.0, w.sum()
        for i in seq:
            p *= w[i] / left
            left -= w[i]
        pi[list(seq)] += p
    return pi


def sequential_draws(w, k, reps, rng):
    """Plain sequential weighted sampling without replacement, reps at once."""
    left = np.tile(np.asarray(w, dtype=float), (reps, 1))
    counts = np.zeros(len(w))
    for _ in range(k):
        cdf = left.cumsum(axis=1)
        pick = (cdf < rng.random(reps)[:, None] * cdf[:, -1:]).sum(axis=1)
        counts += np.bincount(pick, minlength=len(w))
        left[np.arange(reps), pick] = 0.0
    return counts


def assert_freq(counts, p, reps):
    se = np.sqrt(p * (1 - p) / reps)
    assert np.all(np.abs(counts / reps - p) < 4.5 * se + 1e-3), (counts / reps, p)


def test_gumbel_top_k_matches_sequential_weighted_sampling():
    w = np.array([5.0, 3.0, 1.0, 0.5, 0.5])
    k, reps = 2, 20000
    exact = exact_successive_inclusion(w, k)
    rng = np.random.default_rng(11)
    gumbel, first, hot = np.zeros(len(w)), np.zeros(len(w)), np.zeros(len(w))
    for _ in range(reps):
        picks = gumbel_top_k(np.log(w), k, rng)
        gumbel[picks] += 1
        first[picks[0]] += 1
        hot[gumbel_top_k(np.log(w) / 2.0, k, rng)] += 1
    assert_freq(gumbel, exact, reps)
    assert_freq(sequential_draws(w, k, reps, rng), exact, reps)  # the simulation agrees with the formula
    assert_freq(first, w / w.sum(), reps)  # the first draw is ∝ w
    # With a temperature T the draws are ∝ w^(1/T).
    assert_freq(hot, exact_successive_inclusion(np.sqrt(w), k), reps)


def test_token_budget_never_exceeded():
    ds, _ = two_domain_pool()
    tokens = np.random.default_rng(2).integers(5, 40, len(ds))
    for method, extra in (("dsir", {}), ("embedding", {"target_embeddings": np.eye(8)[:1]})):
        emb = np.random.default_rng(3).standard_normal((len(ds), 8)).astype(np.float32)
        sel = TargetSelector(sentences(COOKING, 10, np.random.default_rng(4)), method=method, random_state=0,
                             **extra).select(ds, Budget("tokens", 500), {"tokens": tokens, "embedding": emb})
        assert 0 < tokens[sel.indices].sum() <= 500
        assert sel.diagnostics["tokens_used"] == tokens[sel.indices].sum()


def test_target_similarity_max_and_top_k_mean():
    pool = np.array([[1, 0, 0], [0, 1, 0], [0.6, 0.8, 0]], dtype=np.float32)
    target = np.array([[1, 0, 0], [0.8, 0.6, 0], [0, 0, 1]], dtype=np.float32)
    assert np.allclose(target_similarity(pool, target, 1), [1.0, 0.6, 0.96])
    assert np.allclose(target_similarity(pool, target, 2), [0.9, 0.3, 0.78])
    assert np.allclose(target_similarity(pool, target, 10), [0.6, 0.2, 1.56 / 3])  # k capped at T


def test_embedding_method_with_target_embeddings_ranks_by_similarity():
    rng = np.random.default_rng(5)
    centers = np.linalg.qr(rng.standard_normal((16, 2)))[0].T  # two orthonormal directions
    labels = rng.integers(0, 2, 200)
    emb = centers[labels] + 0.3 * rng.standard_normal((200, 16))
    emb = (emb / np.linalg.norm(emb, axis=1, keepdims=True)).astype(np.float32)
    ds = Dataset.from_table(pa.table({"x": np.arange(200)}))
    tgt = centers[[0, 0, 0]] + 0.1 * rng.standard_normal((3, 16))
    sel = TargetSelector(method="embedding", target_embeddings=tgt).select(ds, 50, {"embedding": emb})
    assert np.all(labels[sel.indices] == 0)
    score = target_similarity(emb, tgt)
    assert np.array_equal(sel.indices, np.argsort(-score, kind="stable")[:50])
    assert np.isnan(sel.pi).all() and sel.params["target_embeddings"] == "array(3, 16)"
    assert sum(len(v) for v in sel.removed.values()) == 150


def test_embedding_method_embeds_target_texts(tmp_path):
    from thresher.features.embeddings import embed, field_text

    ds, domain = two_domain_pool(60)
    path = tmp_path / "target.jsonl"
    rng = np.random.default_rng(9)
    path.write_text("".join(json.dumps({"instruction": "", "output": s}) + "\n" for s in sentences(CODING, 20, rng)))
    features = {"embedding": embed(field_text(ds.column("prompt"), ds.column("response"), "both"))}
    sel = TargetSelector(str(path), method="embedding").select(ds, 40, features)
    assert np.mean(domain[sel.indices] == 1) >= 0.9
    # Without a pool embedding feature the pool is embedded with the same model and text.
    assert np.array_equal(TargetSelector(str(path), method="embedding").select(ds, 40).indices, sel.indices)
    assert TargetSelector(str(path), method="embedding", model="minilm").requires == ["embedding_minilm", "tokens"]


def test_target_from_file_and_dataset_give_the_same_dsir_draw(tmp_path):
    ds, _ = two_domain_pool(50)
    rng = np.random.default_rng(6)
    rows = [{"instruction": s.split(" ", 6)[-1], "input": "", "output": s} for s in sentences(COOKING, 15, rng)]
    path = tmp_path / "target.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    a = TargetSelector(str(path), random_state=1).select(ds, 20)
    b = TargetSelector(Dataset.from_records(rows), random_state=1).select(ds, 20)
    assert np.array_equal(a.indices, b.indices) and a.params["target"] == str(path)


def test_errors_are_actionable(tmp_path):
    with pytest.raises(UsageError, match="method"):
        TargetSelector(["x"], method="bm25")
    with pytest.raises(UsageError, match="temperature"):
        TargetSelector(["x"], temperature=0)
    with pytest.raises(UsageError, match="does not exist"):
        TargetSelector(str(tmp_path / "missing.jsonl"))
    with pytest.raises(UsageError, match="non-empty list of strings"):
        TargetSelector([])
    with pytest.raises(UsageError, match="give a target"):
        TargetSelector(None, method="dsir")
    ds = Dataset.from_table(pa.table({"x": np.arange(5)}))
    with pytest.raises(UsageError, match=r"shape \(rows >= 1, 4\)"):
        TargetSelector(method="embedding", target_embeddings=np.ones((2, 3))).select(
            ds, 2, {"embedding": np.eye(5, 4, dtype=np.float32)})
