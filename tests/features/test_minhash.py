"""Exact hashes, MinHash signatures, LSH and near-duplicate clusters.

Statistical checks compare against exact Jaccard similarities computed by
brute force on the 5-word-shingle sets, with tolerances of 5 standard errors
and fixed seeds (deterministic)."""
from __future__ import annotations

import hashlib
import string
import unicodedata

import numpy as np
import pyarrow as pa
import pytest
from scipy.sparse import csr_matrix

from thresher.errors import UsageError
from thresher.features import minhash as mh
from thresher.features import shingles as signing
from thresher.features.minhash import (
    EMPTY_SIGNATURE,
    choose_bands,
    connected_components,
    estimate_jaccard,
    exact_hash,
    lsh_candidates,
    minhash_signatures,
    near_duplicate_clusters,
    normalize_text,
    verify_pairs,
)

K = 5


# -- a synthetic corpus with planted near-duplicates -----------------------------
def make_corpus(seed: int = 0, n_base: int = 1700, n_planted: int = 300):
    """Random word rows plus edited copies (0-4 substituted words), so the true
    5-shingle Jaccard of planted pairs spans about 0.55-1.0."""
    rng = np.random.default_rng(seed)
    vocab = np.array([f"w{i:04d}" for i in range(3000)])
    rows = [list(vocab[rng.integers(0, len(vocab), rng.integers(40, 121))]) for _ in range(n_base)]
    for _ in range(n_planted):
        words = list(rows[rng.integers(n_base)])
        for pos in rng.choice(len(words), size=rng.integers(0, 5), replace=False):
            words[pos] = vocab[rng.integers(len(vocab))]
        rows.append(words)
    return [" ".join(w) for w in rows]


def shingles(text: str) -> set:
    w = text.split()
    return {tuple(w[i : i + K]) for i in range(max(1, len(w) - K + 1))} if w else set()


def exact_jaccard_matrix(texts: list[str]) -> np.ndarray:
    """Dense (n, n) exact Jaccard of the shingle sets (brute force via a sparse
    incidence matrix)."""
    ids: dict = {}
    indptr, indices = [0], []
    for t in texts:
        indices.extend(ids.setdefault(s, len(ids)) for s in shingles(t))
        indptr.append(len(indices))
    a = csr_matrix((np.ones(len(indices)), indices, indptr), shape=(len(texts), len(ids)))
    inter = (a @ a.T).toarray()
    size = np.diag(inter)
    union = size[:, None] + size[None, :] - inter
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(union > 0, inter / union, 0.0)


@pytest.fixture(scope="module")
def corpus():
    texts = make_corpus()
    jac = exact_jaccard_matrix(texts)
    iu = np.triu_indices(len(texts), 1)
    similar = jac[iu] > 0.3
    pairs = np.stack([iu[0][similar], iu[1][similar]], axis=1)
    return texts, jac, pairs  # pairs: every pair with true J > 0.3


def codes(pairs: np.ndarray, n: int) -> set:
    return set((pairs[:, 0] * n + pairs[:, 1]).tolist())


# -- near-duplicate clusters against the exact truth -----------------------------
def test_recall_and_precision_against_exact_jaccard(corpus):
    texts, jac, similar = corpus
    n = len(texts)
    truth = similar[jac[similar[:, 0], similar[:, 1]] >= 0.8]
    assert len(truth) > 100  # the corpus really spans the threshold
    res = near_duplicate_clusters(texts, threshold=0.8, seed=1)
    assert res.pairs.dtype == np.int64 and (res.pairs[:, 0] < res.pairs[:, 1]).all()
    # Detected as duplicates: same cluster.
    same = res.dup_cluster[truth[:, 0]] == res.dup_cluster[truth[:, 1]]
    assert same.mean() >= 0.95
    # As a direct edge: a row with an identical twin (same signature) is
    # linked through its smallest twin only, so count the pairs without one.
    sig = minhash_signatures(texts)
    twin = np.zeros(n, bool)
    _, inverse = np.unique(sig, axis=0, return_inverse=True)
    twin[np.bincount(inverse.ravel())[inverse.ravel()] > 1] = True
    plain = truth[~twin[truth[:, 0]] & ~twin[truth[:, 1]]]
    assert len(plain) > 50
    found = codes(res.pairs, n)
    assert np.mean([c in found for c in codes(plain, n)]) >= 0.95
    # verified pairs are never far below the threshold
    assert jac[res.pairs[:, 0], res.pairs[:, 1]].min() >= 0.8 - 0.15
    np.testing.assert_allclose(res.jaccard, estimate_jaccard(minhash_signatures(texts), res.pairs))
    assert (res.bands, res.rows) == choose_bands(0.8, 128)
    assert res.stats["verified_pairs"] == len(res.pairs)


def test_strict_verification_keeps_estimates_at_threshold(corpus):
    texts, jac, _ = corpus
    res = near_duplicate_clusters(texts, threshold=0.8, verify_z=0.0)
    assert (res.jaccard >= 0.8).all()
    assert jac[res.pairs[:, 0], res.pairs[:, 1]].min() >= 0.8 - 0.15


def test_jaccard_estimate_is_unbiased_with_binomial_variance(corpus):
    texts, jac, similar = corpus
    j = jac[similar[:, 0], similar[:, 1]]
    pairs, j = similar[j < 1], j[j < 1]
    z = []
    for seed in range(4):  # independent hash functions per seed
        est = estimate_jaccard(minhash_signatures(texts, num_perm=128, seed=seed), pairs)
        z.append((est - j) / np.sqrt(j * (1 - j) / 128))
    z = np.concatenate(z)
    m = len(z)
    assert m > 500
    assert abs(z.mean()) < 5 / np.sqrt(m)
    assert abs(z.var() - 1) < 5 * np.sqrt(2 / (m - 1))


def test_candidate_rate_follows_the_s_curve(corpus):
    texts, jac, similar = corpus
    j = jac[similar[:, 0], similar[:, 1]]
    pairs, j = similar[(j > 0.5) & (j < 1)], j[(j > 0.5) & (j < 1)]
    b, r = choose_bands(0.9, 128)
    p = 1 - (1 - j**r) ** b
    hits = 0
    seeds = range(6)
    for seed in seeds:
        cand = lsh_candidates(minhash_signatures(texts, seed=seed), threshold=0.9)
        found = codes(cand, len(texts))
        hits += sum(c in found for c in codes(pairs, len(texts)))
    expected = len(seeds) * p.sum()
    sd = np.sqrt(len(seeds) * (p * (1 - p)).sum())
    assert 0.05 * len(seeds) * len(p) < expected < 0.95 * len(seeds) * len(p)  # a discriminating range
    assert abs(hits - expected) < 5 * sd


# -- signatures ---------------------------------------------------------------
def test_signatures_deterministic_per_seed_and_input_form(corpus, monkeypatch):
    texts = corpus[0][:300]
    a = minhash_signatures(texts, seed=3)
    assert a.shape == (300, 128) and a.dtype == np.uint32
    np.testing.assert_array_equal(a, minhash_signatures(pa.array(texts), seed=3))
    np.testing.assert_array_equal(a, minhash_signatures(pa.chunked_array([texts[:100], texts[100:]]), seed=3))
    np.testing.assert_array_equal(a, minhash_signatures(pa.array(texts, pa.large_string()), seed=3))
    assert (a != minhash_signatures(texts, seed=4)).mean() > 0.9
    monkeypatch.setattr(signing, "_CHUNK_BYTES", 997)  # many small chunks: same answer
    np.testing.assert_array_equal(a, minhash_signatures(texts, seed=3))


def test_signature_of_a_union_is_the_elementwise_minimum():
    """Covers every padding length on the ladder and the long-row path."""
    rng = np.random.default_rng(7)
    vocab = [f"t{i}" for i in range(500)]
    full, left, right = [], [], []
    for n_words in list(range(K + 1, 60)) + [150, 700, 4200, 9000]:
        words = [vocab[i] for i in rng.integers(0, len(vocab), n_words)]
        cut = int(rng.integers(1, n_words - K + 1))  # shingles [0, cut) and [cut, end)
        full.append(" ".join(words))
        left.append(" ".join(words[: cut + K - 1]))
        right.append(" ".join(words[cut:]))
    sig, sl, sr = (minhash_signatures(t, seed=2) for t in (full, left, right))
    np.testing.assert_array_equal(sig, np.minimum(sl, sr))


def test_text_is_normalized_before_shingling():
    raw = ["The QUICK, brown fox -- jumps!  Over the lazy dog.", "the quick brown fox jumps over the lazy dog"]
    sig = minhash_signatures(raw)
    np.testing.assert_array_equal(sig[0], sig[1])
    np.testing.assert_array_equal(minhash_signatures(normalize_text(raw)), sig)


def test_empty_and_one_word_rows():
    texts = ["", None, "   ", "!!! ...", "hello", "Hello!", "one two", "One, two.", "x " * 3]
    sig = minhash_signatures(texts)
    empty = [0, 1, 2, 3]
    assert (sig[empty] == EMPTY_SIGNATURE).all()
    assert (sig[4:] % 2 == 1).all()  # real values are odd, the sentinel even
    np.testing.assert_array_equal(sig[4], sig[5])
    np.testing.assert_array_equal(sig[6], sig[7])
    res = near_duplicate_clusters(texts)
    assert not np.isin(res.pairs, empty).any()
    np.testing.assert_array_equal(res.dup_cluster[empty], empty)
    assert res.dup_cluster[5] == 4 and res.dup_cluster[7] == 6 and res.dup_cluster[8] == 8
    assert res.stats["empty_rows"] == 4
    assert minhash_signatures([]).shape == (0, 128)
    # a whole input with fewer words than one shingle
    np.testing.assert_array_equal(minhash_signatures(["Hello  World!"]), minhash_signatures(["hello world"]))
    np.testing.assert_array_equal(minhash_signatures(["hello"])[0], sig[4])
    assert near_duplicate_clusters([]).dup_cluster.shape == (0,)


def test_long_tokens_hash_by_content():
    long_a = "a" * 200 + "b"
    long_b = "a" * 200 + "c"
    nine = "abcdefghi"
    sig = minhash_signatures([long_a, long_a.upper(), long_b, nine, nine[:-1] + "j", nine[:8]])
    np.testing.assert_array_equal(sig[0], sig[1])
    for i, j in [(0, 2), (3, 4), (3, 5)]:
        assert (sig[i] != sig[j]).all()


# -- exact hashes and normalization ----------------------------------------------
def test_normalize_text():
    out = normalize_text(
        ["Hello,   World!", " \tTabs\nand\r\nlines ", None, "", "ÉCOLE “quoted” — it’s\u00a0NBSP", "a\u200bb c\u3000d"]
    )
    assert out.to_pylist() == ["hello world", "tabs and lines", None, "", "école quoted its nbsp", "ab c d"]


def _reference_normalize(text: str) -> str:
    out = []
    for ch in text.lower():
        cp, cat = ord(ch), unicodedata.category(ch)
        if ch in string.whitespace or cp in (0x1C, 0x1D, 0x1E, 0x1F, 0x85) or cat[0] == "Z":
            out.append(" ")
        elif ch in string.punctuation or cat[0] == "P" or cat in ("Cc", "Cf"):
            continue
        else:
            out.append(ch)
    return " ".join(word for word in "".join(out).split(" ") if word)


def test_normalize_text_matches_a_per_character_reference():
    rng = np.random.default_rng(3)
    alphabet = list("abcXYZ019 \t\n\r\x0b\x0c.,;:!?'\"()[]{}-_/@#&*%+=<>|~^$`\x00\x07\x1f\x7f") + list(
        "éÉßçÇжЖ中文\u00a0\u2009\u3000\u2028\u0085\u00ad\u200b\ufeff“”‘’—–…«»¿¡·、。！，\U0001F600"
    )
    texts = ["".join(rng.choice(alphabet, size=rng.integers(0, 40))) for _ in range(500)]
    assert normalize_text(texts).to_pylist() == [_reference_normalize(t) for t in texts]


def test_exact_hash_ignores_case_whitespace_and_punctuation():
    texts = ["Hello, World!", "hello world", "  HELLO\tworld...", "hello  world?", "hello there", None]
    h = exact_hash(texts)
    assert h.type == pa.uint64()
    v = h.to_pylist()
    assert v[0] == v[1] == v[2] == v[3]
    assert v[4] != v[0] and v[5] is None
    assert format(v[1], "016x") == hashlib.blake2b(b"hello world", digest_size=8).hexdigest()
    assert exact_hash(pa.chunked_array([texts[:2], texts[2:]])).to_pylist() == v


# -- LSH pieces -------------------------------------------------------------------
def test_choose_bands_is_the_most_selective_banding_with_recall():
    for t, p in [(0.8, 128), (0.5, 128), (0.9, 64), (0.95, 256)]:
        b, r = choose_bands(t, p)
        assert b * r <= p and b == p // r
        assert 1 - (1 - t**r) ** b >= 0.99
        if r < p:
            assert 1 - (1 - t ** (r + 1)) ** (p // (r + 1)) < 0.99
    assert choose_bands(0.8, 128) == (21, 6)
    assert choose_bands(0.01, 128) == (128, 1)  # nothing reaches 0.99: most permissive


def test_big_buckets_emit_a_star():
    keys = np.array([7] * 20 + [3, 3, 3, 9], dtype=np.uint64)
    ids = np.arange(24) * 2
    lo, hi, capped = mh.bucket_pairs(keys, ids, max_bucket=16)
    pairs = set(zip(lo.tolist(), hi.tolist()))
    assert capped == 1
    assert pairs == {(0, int(i)) for i in ids[1:20]} | {(40, 42), (40, 44), (42, 44)}


def test_identical_rows_form_one_star_cluster():
    texts = ["same words in every one of these rows here"] * 40 + ["something else entirely different now"]
    res = near_duplicate_clusters(texts)
    assert (res.dup_cluster[:40] == 0).all() and res.dup_cluster[40] == 40
    assert len(res.pairs) == 39 and (res.pairs[:, 0] == 0).all()
    assert res.stats["identical_signature_rows"] == 39


def test_verify_pairs_keeps_estimates_at_or_above_threshold():
    sig = np.ones((4, 10), dtype=np.uint32)
    sig[1, :2] = 3  # 8/10 equal to row 0
    sig[2, :3] = 5  # 7/10 equal to row 0
    sig[3] = EMPTY_SIGNATURE
    pairs = np.array([[0, 1], [0, 2], [1, 2], [0, 3]])
    np.testing.assert_allclose(estimate_jaccard(sig, pairs), [0.8, 0.7, 0.7, 0.0])
    np.testing.assert_array_equal(verify_pairs(sig, pairs, 0.8), [[0, 1]])
    np.testing.assert_array_equal(verify_pairs(sig, pairs, 0.7), [[0, 1], [0, 2], [1, 2]])


def test_connected_components_ids_are_component_minima():
    np.testing.assert_array_equal(connected_components(6, [[4, 5], [1, 4], [2, 3]]), [0, 1, 2, 2, 1, 1])
    np.testing.assert_array_equal(connected_components(3, np.zeros((0, 2))), [0, 1, 2])
    rng = np.random.default_rng(1)
    n = 200
    pairs = rng.integers(0, n, size=(150, 2))
    parent = list(range(n))

    def find(x: int) -> int:
        while parent[x] != x:
            x = parent[x]
        return x

    for i, j in pairs.tolist():
        a, b = find(i), find(j)
        parent[max(a, b)] = min(a, b)  # union keeps the smaller root: root = component minimum
    np.testing.assert_array_equal(connected_components(n, pairs), [find(i) for i in range(n)])


def test_bad_arguments_raise_usage_errors():
    with pytest.raises(UsageError, match="threshold"):
        near_duplicate_clusters(["a b"], threshold=0)
    with pytest.raises(UsageError, match="threshold"):
        choose_bands(1.5, 128)
    with pytest.raises(UsageError, match="num_perm"):
        minhash_signatures(["a b"], num_perm=0)
    with pytest.raises(UsageError, match="shingle_size"):
        minhash_signatures(["a b"], shingle_size=0)
    with pytest.raises(UsageError, match="string"):
        minhash_signatures(pa.array([1, 2]))
    with pytest.raises(UsageError, match="uint32"):
        lsh_candidates(np.zeros((3, 8)))
    with pytest.raises(UsageError, match="num_perm"):
        lsh_candidates(np.zeros((3, 8), np.uint32), num_perm=16)
    with pytest.raises(UsageError, match="pairs"):
        connected_components(3, [[0, 3]])
    with pytest.raises(UsageError, match="verify_z"):
        near_duplicate_clusters(["a"], verify_z=-1)
