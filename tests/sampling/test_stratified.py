import json

import numpy as np
import pyarrow as pa
import pytest

from thresher.core.budget import Budget
from thresher.data.dataset import Dataset
from thresher.errors import UsageError
from thresher.sampling._common import srs_within_groups
from thresher.sampling.allocation import allocate, largest_remainder, water_fill
from thresher.sampling.stratified import StratifiedSampler

REPS = 2000


def assert_inclusion(counts, pi, reps, z=4.5):
    counts, pi = np.asarray(counts, dtype=float), np.asarray(pi, dtype=float)
    tol = z * np.sqrt(pi * (1 - pi) / reps) + 0.5 / reps
    dev = np.abs(counts / reps - pi)
    bad = dev > tol
    assert not bad.any(), f"rows {np.flatnonzero(bad)[:5]}: freq {counts[bad][:5] / reps} vs pi {pi[bad][:5]}"


def make_pool(sizes: dict[str, int], seed: int = 0, **extra) -> Dataset:
    rng = np.random.default_rng(seed)
    labels = np.repeat(list(sizes), list(sizes.values()))
    rng.shuffle(labels)
    cols = {"task": labels.tolist(), "y": rng.gamma(2.0, 1.0, len(labels))}
    cols.update(extra)
    return Dataset.from_table(pa.table(cols))


# -- allocation ----------------------------------------------------------------
def test_allocation_sums_exactly_and_respects_bounds_for_random_configurations():
    rng = np.random.default_rng(0)
    for trial in range(600):
        h = int(rng.integers(1, 12))
        sizes = rng.integers(0, 60, h)
        sizes[rng.integers(h)] = max(sizes.max(), 1)
        method = ["proportional", "equal", "neyman", "optimal"][trial % 4]
        sd = rng.uniform(0, 3, h) if method in ("neyman", "optimal") else None
        cost = rng.uniform(0.5, 4, h) if method == "optimal" else None
        lo = int(rng.integers(0, 5))
        hi = None if trial % 3 else int(rng.integers(max(lo, 1), 30))
        lower = np.minimum(lo, sizes if hi is None else np.minimum(sizes, hi))
        upper = sizes if hi is None else np.minimum(sizes, hi)
        if lower.sum() > upper.sum():
            continue
        n = int(rng.integers(lower.sum(), upper.sum() + 1))
        counts = allocate(sizes, n, method, sd=sd, cost=cost, min_per_stratum=lo, max_per_stratum=hi).counts
        assert counts.sum() == n
        assert np.all(counts >= lower) and np.all(counts <= upper) and np.all(counts <= sizes)


def test_allocation_shares_follow_the_formulas_when_no_bound_binds():
    sizes = np.array([400, 300, 200, 100])
    sd = np.array([1.0, 2.0, 3.0, 4.0])
    cost = np.array([1.0, 4.0, 1.0, 9.0])
    n = 100
    for method, w in [("proportional", sizes), ("equal", np.ones(4)), ("neyman", sizes * sd),
                      ("optimal", sizes * sd / np.sqrt(cost))]:
        a = allocate(sizes, n, method, sd=sd, cost=cost if method == "optimal" else None)
        ideal = n * w / w.sum()
        assert np.allclose(a.target, ideal) and np.allclose(a.uncapped, ideal)
        assert np.all(np.abs(a.counts - ideal) < 1) and a.counts.sum() == n
    # Largest remainder: 100 * (1/3, 1/3, 1/3) -> 34, 33, 33 (earlier stratum wins the tie).
    assert allocate(np.array([10, 10, 10]), 100 // 10, "equal").counts.tolist() == [4, 3, 3]


def test_allocation_caps_and_reallocates():
    # Stratum 0 can give only 5 rows; the rest is shared in proportion by the others.
    a = allocate(np.array([5, 100, 300]), 60, "equal")
    assert a.counts.tolist() == [5, 28, 27] and np.isclose(a.uncapped[0], 20)
    b = allocate(np.array([1000, 10, 10]), 30, "proportional", min_per_stratum=5)
    assert b.counts.tolist() == [20, 5, 5]
    c = allocate(np.array([1000, 100, 100]), 60, "proportional", max_per_stratum=25)
    assert c.counts.tolist() == [25, 18, 17] or c.counts.tolist() == [25, 17, 18]


def test_water_fill_and_largest_remainder_properties():
    rng = np.random.default_rng(1)
    for _ in range(300):
        k = int(rng.integers(1, 20))
        w = rng.exponential(size=k) * (rng.random(k) > 0.2)
        lo = rng.integers(0, 3, k).astype(float)
        hi = lo + rng.integers(0, 10, k)
        total = rng.uniform(lo.sum(), hi.sum())
        x = water_fill(w, total, lo, hi)
        assert np.isclose(x.sum(), total) and np.all(x >= lo - 1e-9) and np.all(x <= hi + 1e-9)
        n = int(np.floor(total))
        if n >= lo.sum():
            c = largest_remainder(np.clip(x * n / max(total, 1e-12), lo, hi), n, lo.astype(int), hi.astype(int))
            assert c.sum() == n and np.all(c >= lo) and np.all(c <= hi)


def test_allocation_errors_name_the_bound():
    with pytest.raises(UsageError, match="min_per_stratum=10 over 3 strata needs at least 30 rows"):
        allocate(np.array([50, 50, 50]), 20, min_per_stratum=10)
    with pytest.raises(UsageError, match="max_per_stratum=5 caps the sample at 15 rows"):
        allocate(np.array([50, 50, 50]), 20, max_per_stratum=5)
    with pytest.raises(UsageError, match="needs per-stratum standard deviations"):
        allocate(np.array([5, 5]), 4, "neyman")


# -- sampling ------------------------------------------------------------------
def test_inclusion_frequency_of_every_row_matches_pi_neyman_with_take_all():
    ds = make_pool({"a": 14, "b": 9, "c": 5, "d": 3})
    sampler = StratifiedSampler(by="task", allocation="neyman", sd={"a": 1, "b": 2, "c": 6, "d": 9},
                                random_state=0)
    pi = sampler.inclusion_probabilities(ds, 12)
    codes, labels = ds.categorical(["task"])
    plan = sampler.plan(ds, 12)
    counts = np.zeros(len(ds))
    for seed in range(REPS):
        sel = StratifiedSampler(by="task", allocation="neyman", sd={"a": 1, "b": 2, "c": 6, "d": 9},
                                random_state=seed).select(ds, 12)
        assert np.array_equal(np.bincount(codes[sel.indices], minlength=4), plan.counts)  # exact n_h every time
        counts[sel.indices] += 1
    assert plan.counts.sum() == 12 and plan.counts[labels.index("d")] == 3  # thin "d" taken whole
    assert_inclusion(counts, pi, REPS)
    assert np.allclose(sel.pi, pi[sel.indices]) and np.allclose(sel.weights, 1 / sel.pi)


def test_multi_field_cells_and_their_frequencies():
    rng = np.random.default_rng(3)
    lang = rng.choice(["en", "fr"], 36, p=[0.7, 0.3]).tolist()
    task = rng.choice(["qa", "chat", "code"], 36).tolist()
    ds = Dataset.from_table(pa.table({"lang": lang, "task": task}))
    sampler = StratifiedSampler(by=["lang", "task"], min_per_stratum=1, random_state=0)
    plan = sampler.plan(ds, 10)
    assert all("|" in lab for lab in plan.labels) and plan.counts.sum() == 10
    assert np.all(plan.counts >= 1)
    pi = sampler.inclusion_probabilities(ds, 10)
    counts = np.zeros(36)
    for seed in range(REPS):
        counts[StratifiedSampler(by=["lang", "task"], min_per_stratum=1, random_state=seed).select(ds, 10).indices] += 1
    assert_inclusion(counts, pi, REPS)
    sel = sampler.select(ds, 10)
    expect = np.char.add(np.char.add(np.array(lang)[sel.indices], "|"), np.array(task)[sel.indices])
    assert np.array_equal(sel.labels["stratum"], expect)


def test_strata_records_and_metadata():
    ds = make_pool({"a": 500, "b": 300, "c": 200})
    sel = StratifiedSampler(by=["task"], random_state=1).select(ds, Budget.parse(fraction=0.1))
    assert [(r["stratum"], r["pool"], r["selected"]) for r in sel.strata] == [("a", 500, 50), ("b", 300, 30),
                                                                               ("c", 200, 20)]
    assert all(np.isclose(r["pi"], 0.1) for r in sel.strata)
    assert sel.method == "stratified" and sel.params["by"] == ["task"] and sel.seed == 1
    assert np.all(np.diff(sel.indices) > 0)
    json.dumps(sel.manifest())
    assert sel.diagnostics["strata"] == 3 and np.isclose(sel.diagnostics["weight_design_effect"], 1)


def test_variance_of_drives_neyman():
    rng = np.random.default_rng(4)
    task = np.repeat(["calm", "wild"], [500, 500])
    y = np.where(task == "calm", rng.normal(0, 1, 1000), rng.normal(0, 5, 1000))
    ds = Dataset.from_table(pa.table({"task": task, "y": y}))
    plan = StratifiedSampler(by="task", allocation="neyman", variance_of="y").plan(ds, 120)
    ratio = plan.counts[1] / plan.counts[0]
    assert 3.5 < ratio < 7  # ~5 = sd ratio
    assert plan.sd is not None and plan.sd[1] > plan.sd[0]


def test_thin_policies():
    ds = make_pool({"big": 40, "mid": 20, "tiny": 2})
    # take-all: the tiny stratum is taken whole.
    plan = StratifiedSampler(by="task", min_per_stratum=4).plan(ds, 12)
    assert dict(zip(plan.labels, plan.counts.tolist()))["tiny"] == 2 and plan.counts.sum() == 12
    # error: names the cell and the fix.
    with pytest.raises(UsageError, match="'tiny' has 2 rows but needs 4.*thin='take-all'"):
        StratifiedSampler(by="task", min_per_stratum=4, thin="error").plan(ds, 12)
    with pytest.raises(UsageError, match="'tiny' has 2 rows"):
        StratifiedSampler(by="task", allocation="equal", thin="error").plan(ds, 30)
    # collapse (one field): merged into the smallest other cell.
    plan = StratifiedSampler(by="task", min_per_stratum=4, thin="collapse").plan(ds, 12)
    assert plan.labels == ["big", "mid+tiny"] and plan.sizes.tolist() == [40, 22]
    assert plan.collapsed == [{"cell": "tiny", "into": "mid", "pool": 2}]


def test_collapse_prefers_the_cell_sharing_leading_fields():
    lang = ["en"] * 30 + ["en"] * 3 + ["fr"] * 10 + ["fr"] * 12
    task = ["qa"] * 30 + ["code"] * 3 + ["qa"] * 10 + ["chat"] * 12
    ds = Dataset.from_table(pa.table({"lang": lang, "task": task}))
    sel = StratifiedSampler(by=["lang", "task"], min_per_stratum=5, thin="collapse", random_state=0).select(ds, 20)
    # en|code (3 rows) shares "en" with en|qa only, even though fr|qa is smaller.
    assert sel.diagnostics["collapsed"] == [{"cell": "en|code", "into": "en|qa", "pool": 3}]
    labels = {r["stratum"]: r["pool"] for r in sel.strata}
    assert labels == {"en|code+en|qa": 33, "fr|chat": 12, "fr|qa": 10}
    assert sum(r["selected"] for r in sel.strata) == 20


def test_same_seed_same_selection_different_seed_differs():
    ds = make_pool({"a": 300, "b": 200})
    a = StratifiedSampler(by="task", random_state=5).select(ds, 50)
    b = StratifiedSampler(by="task", random_state=5).select(ds, 50)
    c = StratifiedSampler(by="task", random_state=6).select(ds, 50)
    assert np.array_equal(a.indices, b.indices) and np.array_equal(a.labels["stratum"], b.labels["stratum"])
    assert not np.array_equal(a.indices, c.indices)


def test_many_strata_use_the_vectorized_path():
    rng = np.random.default_rng(8)
    g = rng.integers(0, 3000, 20000)
    ds = Dataset.from_table(pa.table({"g": g}))
    sel = StratifiedSampler(by="g", allocation="equal", random_state=0).select(ds, 6000)
    codes, labels = ds.categorical(["g"])
    got = np.bincount(codes[sel.indices], minlength=len(labels))
    plan = StratifiedSampler(by="g", allocation="equal").plan(ds, 6000)
    assert np.array_equal(got, plan.counts) and len(np.unique(sel.indices)) == 6000


class _NoCandidates:
    """A generator whose pre-sample keys are all at their maximum, so every
    group with rate < 1 falls short of candidates and the exact fallback (all
    rows of the group) is used."""

    def __init__(self, seed):
        self.rng = np.random.default_rng(seed)

    def integers(self, low, high, size, dtype):
        return np.full(size, high - 1, dtype=dtype)

    def permutation(self, n):
        return self.rng.permutation(n)

def test_srs_within_groups_fallback_is_exact():
    sizes, take = np.array([300, 500, 200]), np.array([5, 12, 2])
    codes = np.repeat([0, 1, 2], sizes)
    counts = np.zeros(len(codes))
    for seed in range(REPS):
        picked = srs_within_groups(codes, sizes, take, _NoCandidates(seed))
        assert np.array_equal(np.bincount(codes[picked], minlength=3), take)
        counts[picked] += 1
    assert_inclusion(counts, (take / sizes)[codes], REPS)


def _reference_cells(table: pa.Table, names: list[str]) -> np.ndarray:
    """Per-row cell label, the slow obvious way: values as strings joined by '|'."""
    cols = []
    for name in names:
        col = table.column(name).combine_chunks()
        if pa.types.is_dictionary(col.type):
            col = col.dictionary_decode()
        strs = pa.compute.cast(col, pa.string()).to_pylist()
        cols.append(["(missing)" if v is None else v for v in strs])
    return np.array(["|".join(vals) for vals in zip(*cols, strict=True)])


def test_categorical_codes_match_sorted_string_labels():
    dictionary = pa.DictionaryArray.from_arrays(pa.array([0, 2, 2, None, 0, 0], pa.int32()),
                                                pa.array(["x", "unused", "y"]))
    table = pa.table({
        "k": pa.array([3, None, 12, 3, 7, 100], pa.int64()), "s": ["b", "a", "b", None, "a", "(missing)"],
        "neg": pa.array([-5, 3, -5, 100, 0, 3]), "wide": pa.array([0, 10**12, 5, 5, -10**12, 0]),
        "u64": pa.array([1, 2**63 + 5, 1, 0, 7, 7], pa.uint64()), "i8": pa.array([-3, 4, 4, None, 1, 1], pa.int8()),
        "f": [1.5, None, 1.5, 2.0, -0.0, 2.0], "d": dictionary, "b": [True, False, None, True, True, False],
    })
    ds = Dataset.from_table(pa.concat_tables([table.slice(0, 2), table.slice(2)]))  # two chunks
    for names in (["k"], ["s"], ["neg"], ["wide"], ["u64"], ["i8"], ["f"], ["d"], ["b"], ["k", "s"],
                  ["neg", "d", "i8"], ["s", "wide"]):
        codes, labels = ds.categorical(names)
        ref = _reference_cells(table, names)
        assert labels == sorted(set(ref.tolist())), names
        assert codes.dtype == np.int64 and np.array_equal(np.array(labels)[codes], ref), names


@pytest.mark.parametrize("kwargs, match", [
    ({"by": []}, "by must be"),
    ({"by": "task", "allocation": "best"}, "allocation must be one of"),
    ({"by": "task", "allocation": "neyman"}, "exactly one of variance_of"),
    ({"by": "task", "allocation": "neyman", "variance_of": "y", "sd": {"a": 1}}, "exactly one of"),
    ({"by": "task", "variance_of": "y"}, "only used by allocation='neyman'"),
    ({"by": "task", "allocation": "optimal", "variance_of": "y"}, "needs per-stratum costs"),
    ({"by": "task", "allocation": "optimal", "variance_of": "y", "cost": {"a": 1}, "cost_of": "c"}, "not both"),
    ({"by": "task", "cost_of": "c"}, "only used by allocation=.optimal."),
    ({"by": "task", "cost": {"a": 1}}, "only used by allocation='optimal'"),
    ({"by": "task", "allocation": "optimal", "sd": {"a": 1}, "cost": {"a": 0}}, "positive"),
    ({"by": "task", "allocation": "neyman", "sd": {"a": -1}}, "non-negative"),
    ({"by": "task", "min_per_stratum": -1}, "min_per_stratum"),
    ({"by": "task", "min_per_stratum": 5, "max_per_stratum": 3}, "below"),
    ({"by": "task", "thin": "drop"}, "thin must be one of"),
    ({"by": "task", "random_state": 1.5}, "random_state"),
])
def test_constructor_validation(kwargs, match):
    with pytest.raises(UsageError, match=match):
        StratifiedSampler(**kwargs)


def test_data_dependent_errors():
    ds = make_pool({"a": 10, "b": 10})
    with pytest.raises(UsageError, match="cannot draw 50 rows without replacement from a pool of 20"):
        StratifiedSampler(by="task").select(ds, 50)
    with pytest.raises(UsageError, match="sd has no value for stratum 'b'"):
        StratifiedSampler(by="task", allocation="neyman", sd={"a": 1.0}).select(ds, 5)
    with pytest.raises(UsageError, match="no field 'nope'"):
        StratifiedSampler(by="nope").select(ds, 5)
