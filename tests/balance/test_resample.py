"""Resampling: exact counts, determinism, inclusion frequencies, diverse under-sampling, the step."""
import numpy as np
import pytest

from thresher.balance.resample import (Balance, balance, diverse_keep, encode_labels, hybrid_target,
                                       output_columns, resample, resample_indices, target_counts)
from thresher.data.dataset import Dataset
from thresher.errors import UsageError

COUNTS = np.array([500, 120, 37, 8, 1])


def _codes(counts, seed=0):
    codes = np.repeat(np.arange(len(counts)), counts)
    return np.random.default_rng(seed).permutation(codes)


def _pool(counts, seed=0):
    codes = _codes(counts, seed)
    return Dataset.from_records([{"instruction": f"q{i}", "output": f"a{i}", "cat": f"c{c}"}
                                 for i, c in enumerate(codes.tolist())])


# -- targets ----------------------------------------------------------------------
def test_default_targets():
    assert target_counts(COUNTS, "oversample").tolist() == [500] * 5
    assert target_counts(COUNTS, "undersample").tolist() == [1] * 5
    assert hybrid_target(COUNTS) == 37
    assert target_counts(COUNTS, "hybrid").tolist() == [37] * 5
    assert target_counts(COUNTS, "weights").tolist() == COUNTS.tolist()


def test_target_ratio_definitions():
    # oversample: classes below ceil(R * max) are raised to it
    assert target_counts(COUNTS, "oversample", target_ratio=0.1).tolist() == [500, 120, 50, 50, 50]
    assert target_counts(np.array([30, 2]), "oversample", target_ratio=0.1).tolist() == [30, 3]  # not 4
    # undersample: classes above floor(min / R) are cut to it
    assert target_counts(np.array([500, 120, 37, 8]), "undersample", target_ratio=0.1).tolist() == [80, 80, 37, 8]
    assert target_counts(np.array([50, 3]), "undersample", target_ratio=0.1).tolist() == [30, 3]  # not 29
    # hybrid: cut to T, raise to ceil(R * T)
    assert target_counts(COUNTS, "hybrid", target_ratio=0.5).tolist() == [37, 37, 37, 19, 19]
    assert target_counts(COUNTS, "hybrid", target=100, target_ratio=0.3).tolist() == [100, 100, 37, 30, 30]
    assert target_counts(COUNTS, "hybrid", target="mean").tolist() == [133] * 5


@pytest.mark.parametrize("strategy", ["oversample", "undersample", "hybrid"])
@pytest.mark.parametrize("ratio", [None, 0.05, 0.3, 0.77, 1.0])
def test_ratio_after_is_at_least_requested(strategy, ratio):
    after = target_counts(COUNTS, strategy, target_ratio=ratio)
    assert after.min() / after.max() >= (ratio or 1.0) - 1e-12


def test_per_class_targets_and_direction_checks():
    assert target_counts(COUNTS, "hybrid", per_class={0: 10, 4: 30}).tolist() == [10, 120, 37, 8, 30]
    with pytest.raises(UsageError, match="oversample can only raise"):
        target_counts(COUNTS, "oversample", per_class={0: 10})
    with pytest.raises(UsageError, match="undersample can only cut"):
        target_counts(COUNTS, "undersample", per_class={4: 10})


# -- resampling ---------------------------------------------------------------------
@pytest.mark.parametrize("strategy,kw", [("oversample", {}), ("undersample", {}), ("hybrid", {}),
                                         ("oversample", {"target_ratio": 0.3}), ("hybrid", {"target_ratio": 0.5}),
                                         ("hybrid", {"per_class": {0: 3, 1: 1000, 4: 0}})])
def test_exact_counts(strategy, kw):
    codes = _codes(COUNTS)
    targets = target_counts(COUNTS, strategy, **kw)
    idx, copy = resample_indices(codes, targets, seed=1)
    assert np.bincount(codes[idx], minlength=len(COUNTS)).tolist() == targets.tolist()
    assert (np.diff(idx) >= 0).all()  # pool order, copies next to their original
    assert len(copy) == len(idx)


def test_undersample_without_replacement():
    codes = _codes(COUNTS)
    idx, copy = resample_indices(codes, target_counts(COUNTS, "undersample", target_ratio=0.1), seed=3)
    assert len(np.unique(idx)) == len(idx) and not copy.any()


def test_oversample_keeps_each_original_once_plus_copies():
    codes = _codes(COUNTS)
    targets = target_counts(COUNTS, "oversample")
    idx, copy = resample_indices(codes, targets, seed=5)
    originals = idx[copy == 0]
    assert np.array_equal(originals, np.arange(len(codes)))  # every pool row exactly once as an original
    mult = np.bincount(idx, minlength=len(codes))
    for c, n in enumerate(COUNTS):  # multiplicities are floor or ceil of target / size
        m = mult[codes == c]
        assert m.min() >= targets[c] // n and m.max() <= -(-targets[c] // n)
    # copy numbers count up within each run of a repeated row
    starts = np.r_[True, idx[1:] != idx[:-1]]
    assert (copy[starts] == 0).all() and (copy[~starts] == copy[np.flatnonzero(~starts) - 1] + 1).all()


def test_seeded_determinism():
    codes = _codes(COUNTS)
    targets = target_counts(COUNTS, "hybrid", target_ratio=0.4)
    a = resample_indices(codes, targets, seed=11)
    b = resample_indices(codes, targets, seed=11)
    c = resample_indices(codes, targets, seed=12)
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])
    assert not np.array_equal(a[0], c[0])


def test_undersample_inclusion_frequencies_match_k_over_n():
    """Each row of a cut class is kept with probability k / N_c (binomial tolerance)."""
    counts = np.array([50, 20, 10])
    codes = _codes(counts, seed=2)
    targets = np.array([10, 10, 10])
    reps = 2000
    hits = np.zeros(len(codes))
    for s in range(reps):
        idx, _ = resample_indices(codes, targets, seed=s)
        hits[idx] += 1
    freq = hits / reps
    p = (targets / counts)[codes]
    se = np.sqrt(p * (1 - p) / reps)
    cut = p < 1
    z = np.abs(freq[cut] - p[cut]) / se[cut]
    assert z.max() < 4.5, z.max()  # 70 rows, two-sided 4.5 sigma: false alarm < 1e-3
    assert (freq[~cut] == 1).all()
    assert abs(z.mean() - np.sqrt(2 / np.pi)) < 0.25  # |N(0,1)| has mean 0.80: not too tight either


def test_oversample_remainder_frequencies():
    """The remainder copies (target mod N_c) go to a uniform random subset of the class."""
    counts = np.array([40, 15])
    codes = _codes(counts, seed=4)
    targets = np.array([40, 40])  # class 1: 15 originals + 15 (one full round) + 10 more
    reps = 2000
    extra = np.zeros(len(codes))
    for s in range(reps):
        idx, _ = resample_indices(codes, targets, seed=s)
        extra += np.bincount(idx, minlength=len(codes)) == 3
    p = 10 / 15
    freq = extra[codes == 1] / reps
    assert np.abs(freq - p).max() < 4.5 * np.sqrt(p * (1 - p) / reps)
    assert (extra[codes == 0] == 0).all()


def test_one_million_rows_is_fast():
    import time

    counts = (1_000_000 / np.arange(1, 21) / np.sum(1 / np.arange(1, 21))).astype(np.int64)
    codes = _codes(counts)
    t = time.perf_counter()
    idx, copy = resample_indices(codes, target_counts(counts, "undersample"), seed=0)
    assert len(idx) == 20 * counts.min()
    idx, copy = resample_indices(codes, target_counts(counts, "oversample", target_ratio=0.5), seed=0)
    assert time.perf_counter() - t < 5.0  # ~0.2 s on a loaded 2-core box


def test_resample_label_arrays():
    y = np.array(["b", "a", "b", "c", "b", "a"] * 10, dtype=object)
    codes, classes = encode_labels(y)
    assert classes.tolist() == ["a", "b", "c"] and (classes[codes] == y).all()
    idx, copy = resample(y, "oversample", seed=0)
    assert {c: int((y[idx] == c).sum()) for c in "abc"} == {"a": 30, "b": 30, "c": 30}
    assert (idx[copy == 0] == np.arange(60)).all()
    idx, _ = resample(y, "undersample", per_class={"b": 5}, seed=0)
    assert {c: int((y[idx] == c).sum()) for c in "abc"} == {"a": 20, "b": 5, "c": 10}
    ints = np.array([7, 7, 7, -1, 3, 3])
    assert encode_labels(ints)[1].tolist() == [-1, 3, 7]
    assert np.bincount(encode_labels(ints)[0][resample(ints, "hybrid", seed=1)[0]]).tolist() == [2, 2, 2]
    with pytest.raises(UsageError, match="missing"):
        resample(np.array(["a", None], dtype=object))


# -- diverse ---------------------------------------------------------------------------
def _planted(seed=0):
    """Class "big": 10 spread-out directions + 40 near-copies of one of them; class "small": 10 rows."""
    rng = np.random.default_rng(seed)
    spread = np.linalg.qr(rng.standard_normal((32, 32)))[0][:11]  # 11 orthonormal directions
    dups = spread[0] + 1e-3 * rng.standard_normal((40, 32))
    X = np.vstack([spread[:10], dups, spread[10:] + 1e-3 * rng.standard_normal((10, 32))]).astype(np.float32)
    cats = ["big"] * 50 + ["small"] * 10
    ds = Dataset.from_records([{"instruction": f"q{i}", "output": "a", "cat": c} for i, c in enumerate(cats)])
    return ds, X


def test_diverse_undersampling_drops_planted_duplicates():
    ds, X = _planted()
    sel = Balance("cat", "undersample", diverse=True, random_state=0).select(ds, features={"embedding": X})
    kept_big = sel.indices[sel.indices < 50]
    assert len(kept_big) == 10 and len(sel) == 20
    # the 10 distinct directions, at most one of the 41 rows around direction 0
    assert np.count_nonzero(np.isin(kept_big, np.r_[0, np.arange(10, 50)])) <= 1
    random_dups = [np.count_nonzero(np.isin(balance(ds, "cat", "undersample", seed=s).indices, np.arange(10, 50)))
                   for s in range(20)]
    assert np.mean(random_dups) > 5  # random keeps ~8 of them


def test_diverse_hybrid_exact_counts_and_random_copies():
    ds, X = _planted()
    sel = Balance("cat", "hybrid", target=20, diverse=True, random_state=0).select(ds, features={"embedding": X})
    big = sel.indices[sel.indices < 50]
    assert len(big) == 20 and len(np.unique(big)) == 20 and len(sel) == 40
    assert np.isin(np.arange(1, 10), big).all()  # every spread-out direction is kept
    assert np.isin(np.r_[0, np.arange(10, 50)], big).any()
    small = sel.indices[sel.indices >= 50]
    assert np.bincount(small - 50, minlength=10).tolist() == [2] * 10


def test_diverse_keep_keeps_uncut_classes_whole():
    codes = np.array([0] * 6 + [1] * 3)
    X = np.random.default_rng(0).standard_normal((9, 4)).astype(np.float32)
    kept = diverse_keep(codes, np.array([2, 5]), X, seed=0)
    assert kept.tolist()[-3:] == [6, 7, 8] and len(kept) == 5


# -- the step ----------------------------------------------------------------------------
def test_step_selection_contents():
    ds = _pool([30, 6, 3])
    sel = Balance("cat", "oversample", random_state=0).select(ds)
    assert len(sel) == 90 and sel.method == "balance" and sel.seed == 0
    assert np.isnan(sel.pi).all() and (sel.weights == 1).all()
    labels = ds.column("cat").to_numpy(zero_copy_only=False)
    assert (sel.labels["class"] == labels[sel.indices]).all()
    table = {r["stratum"]: r for r in sel.diagnostics["distribution"]}
    assert table["c2"]["pool"] == 3 and table["c2"]["selected"] == 30
    assert table["c2"]["share_selected"] == pytest.approx(1 / 3)
    assert sel.diagnostics["copies"] == 90 - 39 and sel.diagnostics["imbalance_after"] == 1.0
    cols = output_columns(ds, sel)
    assert cols["_copy"].tolist() == sel.labels["copy"].tolist()
    assert (cols["_source_id"] == ds.ids[sel.indices]).all()


def test_weights_strategy_keeps_rows_and_weights_them():
    ds = _pool([30, 6, 3])
    sel = Balance("cat", "weights", power=0.5).select(ds)
    assert sel.indices.tolist() == list(range(39)) and (sel.pi == 1).all()
    codes, _ = ds.categorical(["cat"])
    counts = np.array([30, 6, 3])
    np.testing.assert_allclose(sel.weights, ((39 / (3 * counts)) ** 0.5)[codes])
    assert list(output_columns(ds, sel)) == ["_weight"]
    full = Balance("cat", "weights").select(ds)
    assert full.diagnostics["imbalance_after"] == pytest.approx(1.0)


def test_per_class_with_labels_and_unknown_class():
    ds = _pool([30, 6, 3])
    sel = balance(ds, "cat", "hybrid", per_class={"c0": 5, "c2": 12}, seed=0)
    codes, labels = ds.categorical(["cat"])
    assert np.bincount(codes[sel.indices]).tolist() == [5, 6, 12]
    with pytest.raises(UsageError, match=r"unknown class 'nope' in field 'cat'"):
        balance(ds, "cat", "hybrid", per_class={"nope": 5})


def test_missing_field_names_it():
    with pytest.raises(UsageError, match="no field 'kat'"):
        balance(_pool([3, 2]), "kat", "oversample")


@pytest.mark.parametrize("kw", [dict(strategy="sideways"), dict(target_ratio=0), dict(target_ratio=1.5),
                                dict(strategy="weights", target_ratio=0.5), dict(power=0.5),
                                dict(diverse=True), dict(target=10), dict(strategy="hybrid", target="max"),
                                dict(target_ratio=0.5, per_class={"a": 1}), dict(per_class={"a": -1}),
                                dict(per_class={}), dict(by=""), dict(random_state=-1)])
def test_parameters_are_validated_in_init(kw):
    kw = {"by": "cat", **kw}
    with pytest.raises(UsageError):
        Balance(**kw)


def test_budget_is_refused():
    with pytest.raises(UsageError, match="no budget"):
        Balance("cat").select(_pool([3, 2]), 10)


def test_runs_as_a_recipe_step(monkeypatch):
    from thresher.pipeline import registry
    from thresher.pipeline.runner import StepSpec, run_steps

    monkeypatch.setitem(registry.STEPS, "balance", "thresher.balance.resample:Balance")
    ds = _pool([30, 6, 3])
    run = run_steps(ds, [StepSpec("balance", {"by": "cat", "strategy": "hybrid", "target": 10})], seed=4)
    codes, _ = ds.categorical(["cat"])
    assert np.bincount(codes[run.selection.indices]).tolist() == [10, 10, 10]
    assert run.trace[0]["rows_in"] == 39 and run.trace[0]["rows_out"] == 30
    assert run.trace[0]["removed"] == {"not selected": 20}
