"""Query strategies pick what theory says on toy probability tables and point sets."""
import numpy as np
import pytest
from scipy.stats import entropy as scipy_entropy

from thresher.active.strategies import STRATEGIES, make_strategy, top_k, uncertainty
from thresher.errors import UsageError

# Rows chosen so that each measure has a different most-uncertain row:
#   L: lowest max-prob (0.36)        -> least-confidence
#   M: smallest top1 - top2 (0.01)   -> margin
#   E: highest entropy (1.351 nats)  -> entropy
TABLE = np.array([
    [0.97, 0.01, 0.01, 0.01],  # 0: confident
    [0.36, 0.32, 0.32, 0.00],  # 1: L
    [0.45, 0.44, 0.11, 0.00],  # 2: M
    [0.37, 0.21, 0.21, 0.21],  # 3: E
])
UNLABELED = np.array([10, 11, 12, 13])  # pool positions of the table's rows


def pick(name, proba=TABLE, batch=1, seed=0, **kw):
    return make_strategy(name).select(batch, unlabeled=UNLABELED, proba=proba, rng=seed, **kw)


def test_least_confidence_picks_min_max_probability():
    assert pick("least-confidence").tolist() == [11]


def test_margin_picks_smallest_top1_minus_top2():
    assert pick("margin").tolist() == [12]


def test_entropy_picks_max_entropy():
    assert pick("entropy").tolist() == [13]


@pytest.mark.parametrize("kind", ["least-confidence", "margin", "entropy"])
def test_uncertainty_ranking_matches_direct_formula(kind):
    rng = np.random.default_rng(3)
    P = rng.dirichlet(np.ones(5) * 0.7, size=300)
    if kind == "least-confidence":
        ref = 1 - P.max(1)
    elif kind == "margin":
        s = np.sort(P, axis=1)
        ref = -(s[:, -1] - s[:, -2])
    else:
        ref = scipy_entropy(P, axis=1)
    unl = np.arange(300) + 1000
    got = make_strategy(kind).select(25, unlabeled=unl, proba=P, rng=0)
    assert got.tolist() == (unl[np.argsort(-ref, kind="stable")[:25]]).tolist()


def test_uncertainty_scores_edge_cases():
    assert np.allclose(uncertainty(np.ones((3, 1)), "margin"), 0)
    assert np.allclose(uncertainty(np.ones((3, 1)), "entropy"), 0)
    assert np.allclose(uncertainty([[0.5, 0.5]], "entropy"), np.log(2))
    with pytest.raises(UsageError):
        uncertainty(TABLE, "bald")


def test_ties_are_broken_at_random_but_seeded():
    flat = np.full((50, 2), 0.5)
    unl = np.arange(50)
    picks = {tuple(make_strategy("entropy").select(5, unlabeled=unl, proba=flat, rng=s).tolist()) for s in range(20)}
    assert len(picks) > 10  # not pool order every time
    a = make_strategy("entropy").select(5, unlabeled=unl, proba=flat, rng=7)
    b = make_strategy("entropy").select(5, unlabeled=unl, proba=flat, rng=7)
    assert a.tolist() == b.tolist()


def test_top_k_keeps_every_tied_candidate_in_play():
    scores = np.array([1.0, 2.0, 2.0, 2.0, 0.5])
    seen = set()
    for s in range(60):
        seen.update(top_k(scores, 2, np.random.default_rng(s)).tolist())
    assert seen == {1, 2, 3}


def test_random_is_uniform_inclusion_within_binomial_se():
    unl = np.arange(100, 120)
    batch, reps = 5, 3000
    counts = np.zeros(20)
    for s in range(reps):
        picks = make_strategy("random").select(batch, unlabeled=unl, rng=s)
        assert len(set(picks.tolist())) == batch and set(picks.tolist()) <= set(unl.tolist())
        counts[picks - 100] += 1
    p = batch / 20
    se = np.sqrt(p * (1 - p) / reps)
    assert np.all(np.abs(counts / reps - p) < 4.5 * se)


def test_kcenter_picks_farthest_from_labeled_then_from_picks():
    X = np.array([[0, 0], [1, 0], [0.5, 0], [5, 5], [2, 0]], dtype=np.float32)
    got = make_strategy("kcenter").select(2, unlabeled=np.array([2, 3, 4]), labeled=np.array([0, 1]), X=X, rng=0)
    # (5,5) is farthest from the labeled rows; then (2,0) (distance 1 to (1,0)) beats (0.5,0) (0.5)
    assert got.tolist() == [3, 4]


def test_kcenter_on_a_subset_of_the_rows():
    X = np.array([[0, 0], [9, 9], [3, 0], [1, 0], [50, 50]], dtype=np.float32)
    # row 4 is neither labeled nor a candidate: it must never be picked
    got = make_strategy("kcenter").select(2, unlabeled=np.array([1, 2, 3]), labeled=np.array([0]), X=X, rng=0)
    assert got.tolist() == [1, 2]


def test_hybrid_picks_the_most_spread_among_the_top_uncertain():
    X = np.array([[0, 1], [0, 0], [0.01, 0], [10, 0], [100, 0]], dtype=np.float32)
    labeled = np.array([0])
    unl = np.array([1, 2, 3, 4])
    proba = np.array([[0.5, 0.5], [0.52, 0.48], [0.55, 0.45], [0.99, 0.01]])  # row 4 is certain (and farthest)
    hybrid = make_strategy("hybrid", factor=3).select(1, unlabeled=unl, labeled=labeled, proba=proba, X=X, rng=0)
    entropy = make_strategy("entropy").select(1, unlabeled=unl, proba=proba, rng=0)
    kcenter = make_strategy("kcenter").select(1, unlabeled=unl, labeled=labeled, X=X, rng=0)
    assert entropy.tolist() == [1] and kcenter.tolist() == [4]
    assert hybrid.tolist() == [3]  # farthest of the 3 most uncertain from the labeled row


def test_hybrid_batch_is_spread_over_the_uncertain_candidates():
    X = np.array([[0, 1], [0, 0], [0.01, 0], [10, 0], [100, 0], [200, 0], [300, 0], [0.02, 0]], dtype=np.float32)
    unl = np.arange(1, 8)
    proba = np.array([[0.5, 0.5], [0.52, 0.48], [0.55, 0.45], [0.99, 0.01], [0.98, 0.02], [0.97, 0.03],
                      [0.56, 0.44]])
    # top 4 uncertain: rows 1, 2, 3, 7 (1, 2, 7 nearly coincide); a spread pair takes 3 and one of them
    picks = make_strategy("hybrid", factor=2).select(2, unlabeled=unl, labeled=np.array([0]), proba=proba, X=X,
                                                      rng=0)
    assert sorted(picks.tolist()) == [3, 7]
    assert sorted(make_strategy("entropy").select(2, unlabeled=unl, proba=proba, rng=0).tolist()) == [1, 2]


def test_batch_larger_than_pool_returns_what_is_left():
    got = make_strategy("margin").select(10, unlabeled=UNLABELED, proba=TABLE, rng=0)
    assert sorted(got.tolist()) == UNLABELED.tolist()


def test_bad_inputs_are_usage_errors():
    with pytest.raises(UsageError, match="unknown strategy"):
        make_strategy("bald")
    with pytest.raises(UsageError, match="probability"):
        make_strategy("entropy").select(1, unlabeled=UNLABELED, proba=TABLE[:2], rng=0)
    with pytest.raises(UsageError, match="embedding"):
        make_strategy("kcenter").select(1, unlabeled=UNLABELED, rng=0)
    with pytest.raises(UsageError, match="batch"):
        make_strategy("random").select(0, unlabeled=UNLABELED, rng=0)
    with pytest.raises(UsageError, match="factor"):
        make_strategy("hybrid", factor=0)
    assert set(STRATEGIES) == {"random", "least-confidence", "margin", "entropy", "kcenter", "hybrid"}
