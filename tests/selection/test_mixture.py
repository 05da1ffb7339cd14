import numpy as np
import pyarrow as pa
import pytest

from thresher.core.budget import Budget
from thresher.data.dataset import Dataset
from thresher.errors import UsageError
from thresher.sampling.random import RandomSampler
from thresher.selection.deita import DeitaSelector
from thresher.selection.mixture import MixtureSelector, allocate_mixture, mixture_weights

SIZES = {"chat": 600, "code": 250, "math": 100, "poetry": 40, "sql": 10}


def pool(sizes=SIZES, seed=0):
    rng = np.random.default_rng(seed)
    tasks = np.repeat(list(sizes), list(sizes.values()))
    return Dataset.from_table(pa.table({"task": rng.permutation(tasks)}))


def counts(sel):
    return {k: v["selected"] for k, v in sel.diagnostics["per_task"].items()}


def expected_share(kind, temperature=2.0):
    n = np.array(list(SIZES.values()), dtype=float)
    w = {"proportional": n, "equal": np.ones_like(n), "temperature": n ** (1 / temperature)}[kind]
    return dict(zip(SIZES, w / w.sum()))


@pytest.mark.parametrize("kind", ["proportional", "equal", "temperature"])
@pytest.mark.parametrize("budget", [1, 7, 49, 50])  # no task runs out of rows
def test_shares_within_one_row_of_requested_split(kind, budget):
    ds = pool()
    sel = MixtureSelector(proportions=kind, random_state=0).select(ds, budget)
    got, want = counts(sel), expected_share(kind)
    assert sum(got.values()) == len(sel) == budget
    for task in SIZES:
        assert abs(got[task] - budget * want[task]) < 1, (task, got, want)
        assert sel.diagnostics["per_task"][task]["share"] == pytest.approx(want[task])
    # Each selected row belongs to the task it is labelled with.
    assert np.array_equal(ds.column("task").to_numpy(zero_copy_only=False)[sel.indices], sel.labels["stratum"])


def test_explicit_shares_are_normalised_and_unlisted_tasks_get_nothing():
    sel = MixtureSelector(proportions={"chat": 2, "code": 1, "math": 1}, random_state=0).select(pool(), 80)
    assert counts(sel) == {"chat": 40, "code": 20, "math": 20, "poetry": 0, "sql": 0}


def test_task_sizes_and_caps_bound_shares_and_surplus_is_redistributed():
    ds = pool()
    # Equal shares of 300 would be 60 each; sql has 10 rows and poetry 40.
    got = counts(MixtureSelector(proportions="equal", random_state=0).select(ds, 300))
    assert got["sql"] == 10 and got["poetry"] == 40 and sum(got.values()) == 300
    assert sorted(got[t] for t in ("chat", "code", "math")) == [83, 83, 84]
    # A per-task cap, with the surplus going to the uncapped tasks in proportion.
    got = counts(MixtureSelector(caps={"chat": 30}, random_state=0).select(ds, 100))
    assert got["chat"] == 30 and sum(got.values()) == 100
    rest = np.array([250, 100, 40, 10]) * 70 / 400
    assert np.all(np.abs(np.array([got[t] for t in ("code", "math", "poetry", "sql")]) - rest) < 1)
    # One cap for every task: chat, code and math stop at 25; poetry and sql share the other 20 as 40:10.
    got = counts(MixtureSelector(caps=25, random_state=0).select(ds, 95))
    assert got == {"chat": 25, "code": 25, "math": 25, "poetry": 16, "sql": 4}


def test_temperature_one_is_proportional_and_large_is_equal():
    ds = pool()
    for n in (37, 200):
        prop = MixtureSelector(proportions="proportional", random_state=0).select(ds, n)
        t1 = MixtureSelector(proportions="temperature", temperature=1.0, random_state=0).select(ds, n)
        assert counts(t1) == counts(prop)
    eq = counts(MixtureSelector(proportions="equal", random_state=0).select(ds, 50))
    hot = counts(MixtureSelector(proportions="temperature", temperature=1e9, random_state=0).select(ds, 50))
    assert hot == eq
    # And in between the shares move monotonically toward equal.
    w = [mixture_weights(np.array(list(SIZES.values())), list(SIZES), "temperature", t) for t in (1, 2, 4, 16)]
    big = [x[0] / x.sum() for x in w]
    assert all(a > b for a, b in zip(big, big[1:]))


def test_token_budget_is_split_by_shares_and_never_exceeded():
    ds = pool()
    tokens = np.random.default_rng(1).integers(1, 300, len(ds))
    for budget in (0, 500, 5000, 50000):
        sel = MixtureSelector(proportions="equal", random_state=2).select(ds, Budget("tokens", budget),
                                                                        {"tokens": tokens})
        per_task = sel.diagnostics["per_task"]
        assert tokens[sel.indices].sum() <= budget and sum(r["target"] for r in per_task.values()) == budget
        for r in per_task.values():
            assert r["tokens_selected"] <= r["target"]
        assert np.isnan(sel.pi).all()
    with pytest.raises(UsageError, match="exceeds what the tasks can give"):
        MixtureSelector().select(ds, Budget("tokens", int(tokens.sum()) + 1), {"tokens": tokens})


def test_random_within_task_is_a_simple_random_sample():
    ds = pool({"a": 12, "b": 5})
    reps, n = 2000, 7
    freq = np.zeros(len(ds))
    for seed in range(reps):
        sel = MixtureSelector(proportions="equal", random_state=seed).select(ds, n)
        freq[sel.indices] += 1
    task = ds.column("task").to_numpy(zero_copy_only=False)
    # equal: a gets 4 of 12 (pi 1/3) after b's 3... largest remainder of 3.5/3.5 gives a 4, b 3.
    pi = np.where(task == "a", 4 / 12, 3 / 5)
    assert np.all(np.abs(freq / reps - pi) < 4.5 * np.sqrt(pi * (1 - pi) / reps))
    assert np.allclose(sel.pi, pi[sel.indices]) and np.allclose(sel.weights, 1 / sel.pi)
    again = MixtureSelector(proportions="equal", random_state=3).select(ds, n)
    assert np.array_equal(again.indices, MixtureSelector(proportions="equal", random_state=3).select(ds, n).indices)


def test_within_selector_runs_on_each_task_subset():
    ds = pool({"a": 120, "b": 80})
    rng = np.random.default_rng(4)
    emb = rng.standard_normal((len(ds), 16)).astype(np.float32)
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    features = {"embedding": emb, "quality": rng.random(len(ds))}
    deita = DeitaSelector(score="quality", threshold=0.9)
    sel = MixtureSelector(within=deita).select(ds, 50, features)
    assert sel.diagnostics["shortfall"] == 50 - len(sel)
    assert "not reached: the budget filled first (within task 'a')" in sel.removed
    task = ds.column("task").to_numpy(zero_copy_only=False)
    for name, n_t in (("a", 30), ("b", 20)):
        rows = np.flatnonzero(task == name)
        direct = deita.select(ds.take(rows), Budget("rows", n_t), {k: v[rows] for k, v in features.items()})
        assert np.array_equal(sel.indices[sel.labels["stratum"] == name], rows[direct.indices])
    # A sampling design (no features argument) works too and its pi passes through.
    srs = MixtureSelector(within=RandomSampler(random_state=0)).select(ds, 50)
    assert np.allclose(srs.pi, np.where(task[srs.indices] == "a", 30 / 120, 20 / 80))
    assert MixtureSelector(within=deita).requires == ["task", "embedding", "quality", "tokens"]
    # As in a recipe: a step name with its parameters.
    within = {"deita": {"threshold": 0.9, "score": "quality"}}
    named = MixtureSelector(within=within).select(ds, 50, features)
    assert np.array_equal(named.indices, sel.indices) and named.params["within"] == within


def test_tasks_from_a_feature():
    ds = Dataset.from_table(pa.table({"x": np.arange(100)}))
    clusters = np.repeat([0, 1, 2, 3], 25)
    sel = MixtureSelector(by="cluster", proportions="equal", random_state=0).select(ds, 20, {"cluster": clusters})
    assert np.bincount(clusters[sel.indices]).tolist() == [5, 5, 5, 5]


def test_allocate_mixture_exact_integers():
    alloc = allocate_mixture(np.array([1.0, 1.0, 1.0]), 10, np.array([100.0, 100.0, 2.0]))
    assert alloc.tolist() == [4, 4, 2]


def test_errors_are_actionable():
    ds = pool()
    with pytest.raises(UsageError, match="unknown task.*'prose'"):
        MixtureSelector(proportions={"prose": 1}).select(ds, 10)
    with pytest.raises(UsageError, match="non-negative number"):
        MixtureSelector(proportions={"chat": -1})
    with pytest.raises(UsageError, match="proportions must be one of"):
        MixtureSelector(proportions="uniform")
    with pytest.raises(UsageError, match="caps name unknown"):
        MixtureSelector(caps={"nope": 3}).select(ds, 10)
    with pytest.raises(UsageError, match="non-negative integer"):
        MixtureSelector(caps={"chat": 2.5})
    with pytest.raises(UsageError, match="exceeds what the tasks can give"):
        MixtureSelector(caps=5).select(ds, 30)
    with pytest.raises(UsageError, match="share 0"):
        MixtureSelector(proportions={"chat": 0}).select(ds, 10)
    with pytest.raises(UsageError, match="temperature"):
        MixtureSelector(temperature=0)
    with pytest.raises(UsageError, match="within"):
        MixtureSelector(within=3)
    with pytest.raises(UsageError, match="unknown step 'best'"):
        MixtureSelector(within="best")
    with pytest.raises(UsageError, match="drop n / fraction / tokens"):
        MixtureSelector(within={"deita": {"n": 5}})
    with pytest.raises(UsageError, match="no field 'lang'"):
        MixtureSelector(by="lang").select(ds, 10)
