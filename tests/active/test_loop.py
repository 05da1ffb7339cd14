"""Simulation: learning curves rise, uncertainty beats random at a small budget, seeded, right layout."""
import json

import numpy as np
import pytest

from thresher.active.learners import LogisticLearner, predict
from thresher.active.loop import ActiveSimulator, scores, split_test, summarise, t_interval
from thresher.errors import UsageError


def halfplane(n=400, seed=0):
    """Separable 2-D data, labels by x0 > 0.5: most rows are far from the boundary, so
    querying near it (uncertainty) pins it down with fewer labels than random."""
    rng = np.random.default_rng(seed)
    X = np.column_stack([rng.uniform(-10, 10, n), rng.normal(0, 3, n)]).astype(np.float32)
    return X, np.where(X[:, 0] > 0.5, "pos", "neg").astype(object)


@pytest.fixture(scope="module")
def trajectory():
    X, y = halfplane()
    # two classes: least-confidence, margin and entropy rank rows identically, so entropy stands for all three
    sim = ActiveSimulator(["random", "entropy"], seeds=8, seed=0, batch=4, initial=4, max_labels=20,
                          cold_start="random", stop_set=100)
    return sim.run(X, y, label_field="side")


def test_accuracy_increases_with_labels(trajectory):
    for name, s in trajectory["strategies"].items():
        assert s["mean"][-1] > s["mean"][0] + 0.05, name
        assert s["labeled"] == [4, 8, 12, 16, 20]


def test_uncertainty_beats_random_at_a_small_budget(trajectory):
    # 8 seeds; checked on base seeds 0/10/20/30: the gap at 16 labels was +0.015..+0.027
    s = trajectory["strategies"]
    j = s["random"]["labeled"].index(16)
    assert s["entropy"]["mean"][j] > s["random"]["mean"][j] + 0.005
    gaps = [e["rounds"][j]["accuracy"] - r["rounds"][j]["accuracy"]
            for e, r in zip(s["entropy"]["seeds"], s["random"]["seeds"])]
    assert sum(g >= 0 for g in gaps) >= 6  # paired: entropy at least as good on most seeds


def test_trajectory_layout(trajectory):
    t = trajectory
    assert t["kind"] == "active" and t["label_field"] == "side" and t["metric"] == "accuracy"
    for s in t["strategies"].values():
        assert len(s["seeds"]) == 8 and [x["seed"] for x in s["seeds"]] == list(range(8))
        assert len(s["mean"]) == len(s["ci_low"]) == len(s["ci_high"]) == 5
        assert all(lo <= m <= hi for lo, m, hi in zip(s["ci_low"], s["mean"], s["ci_high"]))
        for run in s["seeds"]:
            assert [r["round"] for r in run["rounds"]] == [0, 1, 2, 3, 4]
            for r in run["rounds"]:
                assert set(r) == {"round", "labeled", "accuracy", "macro_f1", "kappa_vs_prev", "stopped_reason"}
            assert run["rounds"][0]["kappa_vs_prev"] is None
            assert run["rounds"][-1]["stopped_reason"].startswith("budget")
            assert run["stop"] is not None
    json.dumps(t)  # plain JSON


def test_all_strategies_share_split_and_cold_start(trajectory):
    s = trajectory["strategies"]
    for i in range(8):
        first = {name: s[name]["seeds"][i]["rounds"][0]["accuracy"] for name in s}
        assert len(set(first.values())) == 1


def test_seeded_determinism():
    X, y = halfplane(200, seed=5)
    kw = dict(seeds=1, batch=5, max_labels=20, stop_set=50)
    a = ActiveSimulator(["random", "hybrid", "kcenter"], **kw).run(X, y)
    b = ActiveSimulator(["random", "hybrid", "kcenter"], **kw).run(X, y)
    assert json.dumps(a) == json.dumps(b)
    c = ActiveSimulator(["random", "hybrid", "kcenter"], **{**kw, "seed": 1}).run(X, y)
    assert json.dumps(a["strategies"]["random"]) != json.dumps(c["strategies"]["random"])


def test_stop_rule_marks_the_round_it_fires():
    X, y = halfplane(300, seed=2)
    t = ActiveSimulator(["margin"], seeds=1, batch=5, max_labels=60, patience=2, min_delta=0.05,
                        stop_set=100).run(X, y)
    run = t["strategies"]["margin"]["seeds"][0]
    marked = [r for r in run["rounds"] if r["stopped_reason"]]
    assert marked[0]["stopped_reason"].startswith(("plateau", "stabilizing"))
    assert run["stop"]["round"] == marked[0]["round"] < len(run["rounds"]) - 1
    assert run["rounds"][-1]["labeled"] == 60  # the simulation still runs to the budget


def test_split_test_is_stratified_and_disjoint():
    y = np.array(["a"] * 80 + ["b"] * 20 + ["c"] * 2, dtype=object)
    pool, test = split_test(y, 0.25, np.random.default_rng(0))
    assert len(np.intersect1d(pool, test)) == 0 and len(pool) + len(test) == len(y)
    assert [int(np.sum(y[test] == c)) for c in "abc"] == [20, 5, 1]  # 0.25 * 2 = 0.5 rounds up


def test_scores_match_sklearn():
    from sklearn.metrics import f1_score

    rng = np.random.default_rng(0)
    a, b = rng.integers(4, size=100).astype(str), rng.integers(5, size=100).astype(str)
    got = scores(a, b)
    assert got["accuracy"] == pytest.approx(np.mean(a == b))
    assert got["macro_f1"] == pytest.approx(f1_score(a, b, average="macro", zero_division=0))


def test_t_interval_and_reach():
    mean, lo, hi = t_interval(np.array([[1.0, 2.0], [3.0, 2.0]]))
    assert mean.tolist() == [2.0, 2.0] and hi[1] == lo[1] == 2.0
    assert hi[0] - mean[0] == pytest.approx(12.706 * np.sqrt(2) / np.sqrt(2), rel=1e-3)
    runs = [{"seed": s, "full": {"accuracy": 1.0}, "stop": None,
             "rounds": [{"labeled": n, "accuracy": a} for n, a in zip([10, 20, 30], accs)]}
            for s, accs in enumerate([[0.5, 0.86, 0.95], [0.5, 0.95, 0.96]])]
    out = summarise(runs, "accuracy", reach=0.9)
    assert out["reach"]["labels_per_seed"] == [30, 20]
    assert out["reach"]["labels_mean_curve"] == 20  # mean 0.905 at 20 labels


def test_logistic_learner_single_class_and_probabilities():
    X = np.random.default_rng(0).normal(size=(30, 3)).astype(np.float32)
    one = LogisticLearner(X).fit(np.arange(5), np.array(["a"] * 5, dtype=object))
    assert predict(one, np.arange(10)).tolist() == ["a"] * 10
    two = LogisticLearner(X).fit(np.arange(10), np.array(["a", "b"] * 5, dtype=object))
    P = two.predict_proba(np.arange(30))
    assert P.shape == (30, 2) and np.allclose(P.sum(1), 1)


def test_simulator_validates_parameters():
    with pytest.raises(UsageError, match="unknown strategy"):
        ActiveSimulator(["bald"])
    with pytest.raises(UsageError, match="cold start"):
        ActiveSimulator(cold_start="stratified")
    with pytest.raises(UsageError, match="test_fraction"):
        ActiveSimulator(test_fraction=1.5)
    with pytest.raises(UsageError, match="two classes"):
        ActiveSimulator(["random"]).run(np.zeros((10, 2)), ["a"] * 10)


def test_lm_learner_on_a_tiny_llama():
    pytest.importorskip("torch")
    from tests.train.conftest import build_model, build_tokenizer
    from thresher.active.learners import LMLearner, lm_label_features

    import torch

    torch.manual_seed(0)
    torch.set_num_threads(1)
    tok = build_tokenizer()
    model = build_model(len(tok))
    prompts = [f"Is {a} heavier than {b}?" for a, b in zip("abcdefghij", "klmnopqrst")]
    F = lm_label_features(prompts, ["Yes", "No"], model=model, tokenizer=tok, max_length=64)
    assert F.shape == (10, 2) and np.allclose(np.logaddexp(F[:, 0], F[:, 1]), 0, atol=1e-4)
    y = np.array(["Yes", "No"] * 5, dtype=object)
    learner = LMLearner(F).fit(np.arange(6), y[:6])
    P = learner.predict_proba(np.arange(10))
    assert P.shape == (10, 2) and np.allclose(P.sum(1), 1)
    X = np.random.default_rng(0).normal(size=(10, 3)).astype(np.float32)
    t = ActiveSimulator(["random", "hybrid"], seeds=1, batch=2, initial=2, max_labels=6, test_fraction=0.3,
                        stop_set=5, cold_start="random", learner=lambda _: LMLearner(F)).run(X, y)
    assert t["params"]["learner"] == "custom" and len(t["strategies"]["hybrid"]["seeds"][0]["rounds"]) == 3
