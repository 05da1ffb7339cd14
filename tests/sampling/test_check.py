import json
import math

import numpy as np
import pyarrow as pa
import pytest

from thresher.data.dataset import Dataset
from thresher.errors import UsageError
from thresher.sampling.check import check_representativeness, ks_statistic, psi, smd

CATS = np.array(["alpha", "beta", "gamma", "delta", "eps"])
SHARES = np.array([0.4, 0.25, 0.2, 0.1, 0.05])


def make_pool(n: int = 5000, seed: int = 0) -> Dataset:
    rng = np.random.default_rng(seed)
    return Dataset.from_table(pa.table({
        "row_id": [f"r{i}" for i in range(n)],
        "task": rng.choice(CATS, n, p=SHARES),
        "lang": rng.choice(["en", "fr"], n, p=[0.7, 0.3]),
        "flag": rng.random(n) < 0.3,
        "length": rng.gamma(3.0, 50.0, n),
        "score": rng.integers(0, 6, n),
        "text": ["a fairly long instruction text that goes on and on and on, past 64 chars"] * n,
        "many": rng.integers(0, 500, n).astype(str),
    }))


def random_subset(pool: Dataset, n: int, seed: int) -> tuple[Dataset, np.ndarray]:
    idx = np.sort(np.random.default_rng(seed).choice(len(pool), n, replace=False))
    return pool.take(idx), idx


# -- a random subset passes -------------------------------------------------------
def test_random_subset_is_ok_and_fields_are_chosen_automatically():
    pool = make_pool()
    sub, _ = random_subset(pool, 600, seed=1)
    report = check_representativeness(sub, pool)
    assert report.overall == "ok", report.to_json()
    kinds = {f.field: f.kind for f in report.fields}
    assert kinds == {"task": "categorical", "lang": "categorical", "flag": "categorical",
                     "length": "numeric", "score": "numeric"}
    skipped = " ".join(report.notes)
    assert "'row_id' skipped: every value is unique" in skipped
    assert "'text' skipped: long text" in skipped
    assert "'many' skipped: 500 distinct" in skipped
    assert all(f.verdict == "ok" for f in report.fields)
    task = report.field("task")
    assert task.stats["coverage"] == 1.0 and task.missing == []
    assert task.stats["max_share_diff"] < 0.05


def test_by_checks_each_field_and_the_combined_cell():
    pool = make_pool()
    sub, _ = random_subset(pool, 800, seed=2)
    report = check_representativeness(sub, pool, by=["task", "lang"], fields=["length"])
    assert [f.field for f in report.fields] == ["task", "lang", "task|lang", "length"]
    cell = report.field("task|lang")
    assert {c.category for c in cell.categories} == {f"{t}|{lang}" for t in CATS for lang in ("en", "fr")}
    assert report.overall == "ok"


# -- planted shifts fail -------------------------------------------------------
def test_category_shift_fails_chi_square_and_shows_the_shares():
    pool = make_pool()
    task = np.asarray(pool.column("task"))
    rng = np.random.default_rng(3)
    alpha_rows = np.flatnonzero(task == "alpha")
    other_rows = np.flatnonzero(task != "alpha")
    idx = np.concatenate([rng.choice(alpha_rows, 420, replace=False), rng.choice(other_rows, 180, replace=False)])
    report = check_representativeness(pool.take(idx), pool, fields=["task", "length"])
    f = report.field("task")
    assert f.verdict == "fail" and report.overall == "fail"
    assert f.stats["p_value"] < 1e-10 and f.stats["cramers_v"] >= 0.2
    shares = {c.category: c for c in f.categories}
    assert shares["alpha"].subset_share == pytest.approx(0.7)
    assert shares["alpha"].pool_share == pytest.approx(np.mean(task == "alpha"))
    assert shares["alpha"].subset_count == 420
    assert f.stats["max_share_diff"] == pytest.approx(0.7 - np.mean(task == "alpha"))
    assert any("significant" in r for r in f.reasons)
    assert report.field("length").verdict == "ok"


def test_numeric_shift_fails_ks_psi_smd():
    pool = make_pool()
    length = pool.numeric("length")
    rng = np.random.default_rng(4)
    idx = rng.choice(np.flatnonzero(length > np.quantile(length, 0.35)), 500, replace=False)
    f = check_representativeness(pool.take(idx), pool, fields=["length"]).field("length")
    assert f.verdict == "fail"
    assert f.stats["p_value"] < 1e-10
    assert f.stats["ks"] >= 0.2 and f.stats["psi"] >= 0.25 and f.stats["smd"] >= 0.2


# -- hand-computed statistics ------------------------------------------------------
def test_psi_smd_ks_match_hand_computation():
    pool_x = np.arange(1.0, 11.0)  # deciles put every value in its own bin: pool shares 0.1
    sub_x = np.array([1.0, 1.0, 2.0, 3.0])  # bins 0,0,1,2: shares 0.5, 0.25, 0.25, then seven empty bins
    eps = 1e-4
    expected_psi = (0.5 - 0.1) * math.log(5) + 2 * (0.25 - 0.1) * math.log(2.5) + 7 * (eps - 0.1) * math.log(eps / 0.1)
    assert psi(sub_x, pool_x) == pytest.approx(expected_psi, rel=1e-12)
    # means 1.75 and 5.5; sample variances 2.75/3 and 82.5/9
    expected_smd = (1.75 - 5.5) / math.sqrt((2.75 / 3 + 82.5 / 9) / 2)
    assert smd(sub_x, pool_x) == pytest.approx(expected_smd, rel=1e-12)
    assert ks_statistic(sub_x, pool_x) == pytest.approx(0.7)  # at x=3: 1.0 vs 0.3

    pool = Dataset.from_table(pa.table({"x": pool_x}))
    sub = Dataset.from_table(pa.table({"x": sub_x}))
    f = check_representativeness(sub, pool, fpc=False).field("x")
    assert f.stats["psi"] == pytest.approx(expected_psi)
    assert f.stats["smd"] == pytest.approx(expected_smd)
    assert f.stats["ks"] == pytest.approx(0.7)


def test_weights_act_like_row_copies():
    pool_x = np.arange(1.0, 11.0)
    copies = np.array([1.0, 1.0, 2.0, 3.0])
    weighted = np.array([1.0, 2.0, 3.0])
    w = np.array([2.0, 1.0, 1.0])
    assert psi(weighted, pool_x, w) == pytest.approx(psi(copies, pool_x))
    assert ks_statistic(weighted, pool_x, w) == pytest.approx(ks_statistic(copies, pool_x))
    assert smd(weighted, pool_x, w) < 0  # weighted mean 1.75 < 5.5


def test_chi_square_statistic_is_the_subset_vs_rest_of_pool_test():
    """With fpc, the statistic equals a 2 x k homogeneity chi-square of the subset
    against the rows of the pool it does not hold (expected counts from the pool)."""
    pool = make_pool(2000, seed=5)
    sub, idx = random_subset(pool, 700, seed=6)
    f = check_representativeness(sub, pool, fields=["task"]).field("task")
    task = np.asarray(pool.column("task"))
    rest = np.delete(task, idx)
    counts = np.array([[np.sum(task[idx] == c) for c in sorted(CATS)], [np.sum(rest == c) for c in sorted(CATS)]])
    from scipy.stats import chi2_contingency

    chi2, p, dof, _ = chi2_contingency(counts, correction=False)
    assert f.stats["chi2"] == pytest.approx(chi2, rel=1e-9)
    assert f.stats["p_value"] == pytest.approx(p, rel=1e-6)
    assert f.stats["dof"] == dof


# -- coverage and merging ---------------------------------------------------------------
def test_missing_categories_are_reported():
    pool = make_pool()
    task = np.asarray(pool.column("task"))
    rng = np.random.default_rng(7)
    idx = rng.choice(np.flatnonzero(task != "delta"), 300, replace=False)  # delta expected ~30 times
    f = check_representativeness(pool.take(idx), pool, fields=["task"]).field("task")
    assert f.missing == ["delta"]
    assert f.stats["covered"] == 4 and f.stats["categories"] == 5 and f.stats["coverage"] == 0.8
    assert any("missing although expected" in r and "'delta'" in r for r in f.reasons)
    assert f.verdict != "ok"


def test_rare_missing_category_is_listed_but_small_counts_are_merged():
    rng = np.random.default_rng(8)
    labels = np.array(["a"] * 4000 + ["b"] * 3000 + ["c"] * 2900 + ["rare1"] * 60 + ["rare2"] * 40)
    pool = Dataset.from_table(pa.table({"cat": rng.permutation(labels)}))
    cat = np.asarray(pool.column("cat"))
    idx = rng.choice(np.flatnonzero(cat != "rare2"), 150, replace=False)  # rare2 expected 0.6 times
    f = check_representativeness(pool.take(idx), pool).field("cat")
    assert "rare2" in f.missing
    # rare1 and rare2 are expected 1.5 times together, so the smallest other category joins them
    assert any("merged into '(other)'" in n and "'c', 'rare1', 'rare2'" in n for n in f.notes)
    assert f.stats["dof"] == 2  # a, b and (other)
    assert f.verdict == "ok"


def test_subset_category_absent_from_pool_fails():
    pool = Dataset.from_table(pa.table({"cat": ["a", "b"] * 500}))
    sub = Dataset.from_table(pa.table({"cat": ["a", "b"] * 45 + ["new"] * 10}))
    f = check_representativeness(sub, pool, fpc=False).field("cat")
    assert f.verdict == "fail"
    assert any("absent from the pool: 'new'" in r for r in f.reasons)
    assert f.stats["max_share_diff"] == pytest.approx(0.1)


# -- embeddings --------------------------------------------------------------------------
def _clustered_embeddings(labels: np.ndarray, dim: int = 16, seed: int = 9) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(labels.max() + 1, dim))
    return centers[labels] + rng.normal(size=(len(labels), dim))


def test_mmd_is_larger_for_a_shifted_subset_than_a_random_one():
    rng = np.random.default_rng(10)
    labels = rng.integers(0, 5, 3000)
    emb = _clustered_embeddings(labels)
    pool = Dataset.from_table(pa.table({"cluster": labels}))
    rand_idx = rng.choice(3000, 400, replace=False)
    shift_idx = rng.choice(np.flatnonzero(labels != 0), 400, replace=False)  # one cluster of five dropped
    kw = dict(fields=[], max_embedding_rows=500, n_permutations=200)
    rand = check_representativeness(pool.take(rand_idx), pool, embeddings=(emb[rand_idx], emb), **kw)
    shift = check_representativeness(pool.take(shift_idx), pool, embeddings=(emb[shift_idx], emb), **kw)
    r, s = rand.field("embedding"), shift.field("embedding")
    assert s.stats["mmd2"] > 5 * max(r.stats["mmd2"], 1e-4)
    assert s.stats["p_value"] < 0.01 and s.verdict == "fail"
    assert r.stats["p_value"] >= 0.01 and r.verdict == "ok"
    assert r.stats["rows_subset"] == 400 and r.stats["rows_pool"] == 500


def test_mmd_permutation_test_holds_its_level():
    rng = np.random.default_rng(12)
    labels = rng.integers(0, 3, 400)
    emb = _clustered_embeddings(labels, dim=8)
    pool = Dataset.from_table(pa.table({"cluster": labels}))
    reps, alpha = 200, 0.2
    pvals = []
    # many tiny matmuls: BLAS threads only add contention here (6x slower on a busy 2-core machine)
    threadpoolctl = pytest.importorskip("threadpoolctl")
    with threadpoolctl.threadpool_limits(1):
        for i in range(reps):
            idx = rng.choice(400, 150, replace=False)  # f = 0.375: the pool side must leave the subset out
            rep = check_representativeness(pool.take(idx), pool, fields=[], embeddings=(emb[idx], emb),
                                           max_embedding_rows=200, n_permutations=49, random_state=i)
            pvals.append(rep.field("embedding").stats["p_value"])
    rate = np.mean(np.array(pvals) < alpha)
    assert abs(rate - alpha) < 4.5 * math.sqrt(alpha * (1 - alpha) / reps)


# -- weights ---------------------------------------------------------------------------------
def test_pps_subset_is_ok_reweighted_and_not_ok_unweighted():
    rng = np.random.default_rng(13)
    n_pool = 6000
    x = rng.lognormal(0.0, 0.8, n_pool)
    pool = Dataset.from_table(pa.table({"x": x, "size": np.where(x > np.median(x), "big", "small")}))
    pi = np.minimum(800 * x / x.sum(), 1.0)  # Poisson PPS, about 800 rows
    idx = np.flatnonzero(rng.random(n_pool) < pi)
    sub = pool.take(idx)
    weighted = check_representativeness(sub, pool, weights=1 / pi[idx])
    unweighted = check_representativeness(sub, pool)
    assert weighted.overall == "ok", weighted.to_json()
    assert weighted.weighted and weighted.n_effective < len(idx)
    by_column = check_representativeness(Dataset.from_table(sub.table.append_column("_weight", pa.array(1 / pi[idx]))),
                                         pool, weights="_weight")
    assert by_column.to_json() == weighted.to_json()
    assert unweighted.overall == "fail"
    assert unweighted.field("x").verdict == "fail" and unweighted.field("size").verdict == "fail"


# -- calibration: p-values of random subsets are uniform --------------------------------------
def test_p_values_of_random_subsets_hold_the_level():
    pool = make_pool(3000, seed=14)
    rng = np.random.default_rng(15)
    reps, alpha = 200, 0.1
    p_cat, p_num = [], []
    for _ in range(reps):
        idx = rng.choice(3000, 1500, replace=False)  # f = 0.5: the fpc matters
        rep = check_representativeness(pool.take(idx), pool, fields=["task", "length"])
        p_cat.append(rep.field("task").stats["p_value"])
        p_num.append(rep.field("length").stats["p_value"])
    tol = 4.5 * math.sqrt(alpha * (1 - alpha) / reps)
    assert abs(np.mean(np.array(p_cat) < alpha) - alpha) < tol
    assert abs(np.mean(np.array(p_num) < alpha) - alpha) < tol


def test_weighted_p_values_of_pps_subsets_hold_the_level():
    """Poisson PPS subsets judged with 1/pi weights: the design-effect correction keeps
    the tests near their level (Kish's n_eff alone rejects about twice as often)."""
    rng = np.random.default_rng(19)
    n_pool, reps, alpha = 5000, 200, 0.1
    x = rng.lognormal(0.0, 1.0, n_pool)
    pool = Dataset.from_table(pa.table({"x": x, "band": np.digitize(x, np.quantile(x, [0.2, 0.5])).astype(str)}))
    pi = np.minimum(500 * x.clip(0.2) / x.clip(0.2).sum(), 1.0)
    p_num, p_cat = [], []
    for _ in range(reps):
        idx = np.flatnonzero(rng.random(n_pool) < pi)
        rep = check_representativeness(pool.take(idx), pool, weights=1 / pi[idx])
        p_num.append(rep.field("x").stats["p_value"])
        p_cat.append(rep.field("band").stats["p_value"])
    tol = 4.5 * math.sqrt(alpha * (1 - alpha) / reps)
    assert abs(np.mean(np.array(p_num) < alpha) - alpha) < tol
    assert abs(np.mean(np.array(p_cat) < alpha) - alpha) < tol


# -- report output ---------------------------------------------------------------------------
def test_to_json_is_plain_deterministic_and_render_has_a_row_per_field():
    pool = make_pool()
    sub, idx = random_subset(pool, 500, seed=16)
    emb = np.random.default_rng(0).normal(size=(len(pool), 4))
    kw = dict(by=["task", "lang"], embeddings=(emb[idx], emb), n_permutations=50, max_embedding_rows=300)
    a = check_representativeness(sub, pool, **kw).to_json()
    b = check_representativeness(sub, pool, **kw).to_json()
    text = json.dumps(a, allow_nan=False)
    assert text == json.dumps(b, allow_nan=False)
    assert list(a)[:2] == ["overall", "n_subset"]
    report = check_representativeness(sub, pool, **kw)
    table = report.render_rich()
    assert table.row_count == len(report.fields) == 7
    from rich.console import Console

    console = Console(width=200, record=True)
    console.print(table)
    out = console.export_text()
    assert "task|lang" in out and "embedding" in out and "verdict" in out


def test_fpc_turns_off_when_the_subset_is_not_smaller_than_the_pool():
    pool = make_pool(500)
    idx = np.random.default_rng(17).choice(500, 600, replace=True)
    report = check_representativeness(pool.take(idx), pool, fields=["task"])
    assert report.fpc is False and any("finite-population correction off" in n for n in report.notes)


# -- errors ---------------------------------------------------------------------------------
def test_bad_arguments_raise_usage_errors():
    pool = make_pool(200)
    sub, idx = random_subset(pool, 50, seed=18)
    with pytest.raises(UsageError, match="field 'nope' is not in the subset"):
        check_representativeness(sub, pool, fields=["nope"])
    with pytest.raises(UsageError, match="one value per subset row \\(50\\)"):
        check_representativeness(sub, pool, weights=np.ones(49))
    with pytest.raises(UsageError, match="non-negative"):
        check_representativeness(sub, pool, weights=-np.ones(50))
    with pytest.raises(UsageError, match="0-row subset"):
        check_representativeness(pool.take(np.array([], dtype=np.int64)), pool)
    with pytest.raises(UsageError, match="embeddings must be"):
        check_representativeness(sub, pool, embeddings=(np.zeros((50, 3)), np.zeros((200, 4))))
    with pytest.raises(UsageError, match="no field to check"):
        check_representativeness(sub, pool, fields=[])
    nested = Dataset.from_table(pa.table({"tags": [["a"], ["b"]]}))
    with pytest.raises(UsageError, match="only numbers, strings and bools"):
        check_representativeness(nested, nested, fields=["tags"])
