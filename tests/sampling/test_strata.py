"""Stratum keys: tuples of values; null is its own stratum; labels are unambiguous."""
import numpy as np
import pyarrow as pa
import pytest

from thresher.data.dataset import Dataset
from thresher.sampling.check import check_representativeness
from thresher.sampling.cluster import ClusterSampler
from thresher.sampling.stratified import StratifiedSampler
from thresher.sampling.strata import row_labels, strata

TRICKY = ["missing", None, "(missing)", "<null>", "\\<null>", "a|b", "a", "\\", "<x"]


def _reference_keys(table: pa.Table, names: list[str]) -> list[tuple]:
    """Per-row key, the slow obvious way."""
    cols = []
    for name in names:
        col = table.column(name).combine_chunks()
        if pa.types.is_dictionary(col.type):
            col = col.dictionary_decode()
        cols.append(pa.compute.cast(col, pa.string()).to_pylist())
    return list(zip(*cols, strict=True))


def test_null_and_lookalike_literals_are_separate_strata():
    ds = Dataset.from_table(pa.table({"s": TRICKY * 3}))
    st = strata(ds, ["s"])
    assert len(st.labels) == len(TRICKY) == len(set(st.labels))
    assert sorted(st.keys, key=str) == sorted([(v,) for v in TRICKY], key=str)
    assert [st.keys[c] for c in st.codes] == [(v,) for v in TRICKY * 3]
    label = dict(zip(st.keys, st.labels))
    assert label[(None,)] == "<null>" and label[("<null>",)] == "\\<null>" and label[("missing",)] == "missing"
    assert label[("a|b",)] == "a\\|b" and label[("a",)] == "a"


def test_pipe_in_values_does_not_collide_across_fields():
    # ("a|b", "c") and ("a", "b|c") both joined to "a|b|c" before.
    ds = Dataset.from_table(pa.table({"x": ["a|b", "a", "a|b", None, "<null>"],
                                      "y": ["c", "b|c", "c", "<null>", None]}))
    st = strata(ds, ["x", "y"])
    assert st.keys == [(None, "<null>"), ("<null>", None), ("a|b", "c"), ("a", "b|c")]
    assert st.labels == ["<null>|\\<null>", "\\<null>|<null>", "a\\|b|c", "a|b\\|c"]
    assert [st.keys[c] for c in st.codes] == list(zip(ds.table.column("x").to_pylist(),
                                                        ds.table.column("y").to_pylist()))


def test_codes_keys_and_row_labels_agree_for_every_type():
    dictionary = pa.DictionaryArray.from_arrays(pa.array([0, 2, 2, None, 0, 0], pa.int32()),
                                                pa.array(["x", "unused", "y"]))
    table = pa.table({
        "k": pa.array([3, None, 12, 3, 7, 100], pa.int64()), "s": ["b", "a|", "b", None, "a", "<null>"],
        "u64": pa.array([1, 2**63 + 5, 1, 0, 7, 7], pa.uint64()), "i8": pa.array([-3, 4, 4, None, 1, 1], pa.int8()),
        "f": [1.5, None, 1.5, 2.0, -0.0, 2.0], "d": dictionary, "b": [True, False, None, True, True, False],
    })
    ds = Dataset.from_table(pa.concat_tables([table.slice(0, 2), table.slice(2)]))  # two chunks
    for names in (["k"], ["s"], ["u64"], ["i8"], ["f"], ["d"], ["b"], ["k", "s"], ["s", "d", "i8"]):
        st = strata(ds, names)
        ref = _reference_keys(table, names)
        assert st.codes.dtype == np.int64 and [st.keys[c] for c in st.codes] == ref, names
        assert len(st.keys) == len(set(ref)) and st.labels == sorted(st.labels), names
        assert row_labels(table, names).to_pylist() == [st.labels[c] for c in st.codes], names


def test_ordinary_labels_are_unchanged():
    ds = Dataset.from_table(pa.table({"lang": ["en", "fr", "en"], "task": ["qa", "chat", "code"]}))
    assert strata(ds, ["lang", "task"]).labels == ["en|code", "en|qa", "fr|chat"]


def test_stratified_sample_keeps_null_and_literal_missing_apart():
    values = ["missing"] * 40 + [None] * 40 + ["<null>"] * 20
    ds = Dataset.from_table(pa.table({"task": values, "y": np.arange(100.0)}))
    sel = StratifiedSampler(by="task", random_state=0).select(ds, 50)
    records = {r["stratum"]: (r["pool"], r["selected"]) for r in sel.strata}
    assert records == {"missing": (40, 20), "<null>": (40, 20), "\\<null>": (20, 10)}
    picked = np.asarray(values, dtype=object)[sel.indices]
    assert set(sel.labels["stratum"][picked == None]) == {"<null>"}  # noqa: E711
    # sd / cost can be given per label, per key tuple or by the bare value.
    sampler = StratifiedSampler(by="task", allocation="optimal", sd={"missing": 1, (None,): 1, "<null>": 2},
                                cost={"missing": 1, "<null>": 4, "\\<null>": 1})
    assert sampler.plan(ds, 30).counts.sum() == 30


def test_cluster_null_is_its_own_cluster():
    ds = Dataset.from_table(pa.table({"c": ["missing"] * 5 + [None] * 5 + ["x"] * 5}))
    assert len(ClusterSampler(cluster_by="c", random_state=0).plan(ds, 5).labels) == 3


def test_check_compares_null_and_literal_separately():
    pool = Dataset.from_table(pa.table({"task": (["missing"] * 50 + [None] * 50) * 10}))
    sub = pool.take(np.arange(0, 1000, 100))  # only "missing" rows
    field = check_representativeness(sub, pool, by=["task"], fields=[]).field("task")
    shares = {c.category: c.subset_share for c in field.categories}
    assert shares == {"missing": 1.0, "<null>": 0.0} and field.missing == ["<null>"]


@pytest.mark.parametrize("names", [["x"], ["x", "y"]])
def test_strata_are_independent_of_row_order(names):
    rng = np.random.default_rng(0)
    table = pa.table({"x": rng.choice(TRICKY[:6], 200).tolist(), "y": rng.choice(["p|", "q", "<r"], 200).tolist()})
    perm = rng.permutation(200)
    a, b = strata(Dataset.from_table(table), names), strata(Dataset.from_table(table.take(perm)), names)
    assert a.labels == b.labels and np.array_equal(a.codes[perm], b.codes)


def test_mixture_tasks_and_balance_classes_use_the_same_strata():
    from thresher.balance.resample import Balance
    from thresher.selection.mixture import MixtureSelector

    ds = Dataset.from_table(pa.table({"task": ["missing", None, "(missing)"] * 4, "lang": ["a|b", "a", "a"] * 4,
                                      "sub": ["c", "b|c", "b|c"] * 4}))
    assert MixtureSelector(by="task")._tasks(ds, None)[1] == ["(missing)", "<null>", "missing"]
    assert Balance(by=["lang", "sub"]).classes(ds).labels == ["a\\|b|c", "a|b\\|c"]
