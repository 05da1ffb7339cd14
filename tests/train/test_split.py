"""Held-out splits keep groups whole; nested subsets are nested."""
import json

import numpy as np
import pytest

from thresher.api import read
from thresher.errors import UsageError
from thresher.train.split import group_split, nested_subsets, row_groups


@pytest.mark.parametrize("seed", range(20))
def test_group_split_never_splits_a_group_and_hits_the_fraction(seed):
    rng = np.random.default_rng(seed)
    sizes = rng.integers(1, 6, size=300)  # groups of 1..5 rows
    groups = rng.permutation(np.repeat(np.arange(300), sizes))
    train, test = group_split(len(groups), 0.2, seed=seed, groups=groups)
    assert np.intersect1d(train, test).size == 0
    assert np.union1d(train, test).size == len(groups)
    assert np.intersect1d(groups[train], groups[test]).size == 0
    # whole groups of <= 5 rows: the cut lands within half a group of the target
    assert abs(len(test) - 0.2 * len(groups)) <= 2.5


def test_group_split_is_seeded_and_varies_with_the_seed():
    a = group_split(500, 0.1, seed=3)
    b = group_split(500, 0.1, seed=3)
    c = group_split(500, 0.1, seed=4)
    assert np.array_equal(a[1], b[1]) and not np.array_equal(a[1], c[1])
    assert len(a[1]) == 50


def test_group_split_rows_are_equally_likely_to_be_held_out():
    counts = np.zeros(40)
    for seed in range(2000):
        counts[group_split(40, 0.25, seed=seed)[1]] += 1
    # each row: Binomial(2000, 0.25); sd ~ 19.4 -> 5 sd band
    assert np.all(np.abs(counts - 500) < 5 * np.sqrt(2000 * 0.25 * 0.75))


def test_stratified_split_keeps_class_proportions():
    labels = np.array(["a"] * 900 + ["b"] * 90 + ["c"] * 10)
    train, test = group_split(len(labels), 0.1, seed=1, stratify=labels)
    got = {k: int(np.sum(labels[test] == k)) for k in "abc"}
    assert got == {"a": 90, "b": 9, "c": 1}


def test_stratified_split_with_groups_keeps_groups_whole():
    rng = np.random.default_rng(5)
    groups = np.repeat(np.arange(200), 3)
    labels = np.repeat(rng.choice(["x", "y"], 200, p=[0.8, 0.2]), 3)
    train, test = group_split(600, 0.2, seed=0, groups=groups, stratify=labels)
    assert np.intersect1d(groups[train], groups[test]).size == 0
    for k in "xy":
        share = np.mean(labels[test] == k)
        assert abs(share - np.mean(labels == k)) < 0.03


def test_group_split_bad_arguments():
    with pytest.raises(UsageError, match="holdout fraction"):
        group_split(10, 1.5)
    with pytest.raises(UsageError, match="groups has 3 values"):
        group_split(10, 0.2, groups=[1, 2, 3])
    with pytest.raises(UsageError, match="one side empty"):
        group_split(10, 0.2, groups=[0] * 10)


def test_row_groups_join_duplicates_and_augmented_rows(tmp_path):
    records = [
        {"id": "r1", "instruction": "q1", "output": "a1", "_source_id": None},
        {"id": "r2", "instruction": "q2", "output": "a2", "_source_id": None},
        {"id": "r3", "instruction": "q1", "output": "a1", "_source_id": None},  # exact duplicate of r1
        {"id": "r4", "instruction": "q2 rephrased", "output": "a2", "_source_id": "r2"},
        {"id": "r5", "instruction": "q5", "output": "a5", "_source_id": None},
    ]
    path = tmp_path / "pool.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    g = row_groups(read(str(path)))
    assert g[0] == g[2] and g[1] == g[3]
    assert len({g[0], g[1], g[4]}) == 3


def test_nested_subsets_are_nested_with_the_right_sizes():
    subsets = nested_subsets(1000, [0.1, 0.2, 0.4, 0.8, 1.0], seed=7)
    assert [len(s) for s in subsets] == [100, 200, 400, 800, 1000]
    for small, big in zip(subsets, subsets[1:]):
        assert np.isin(small, big).all()
    assert len(np.unique(subsets[-1])) == 1000


def test_stratified_nested_subsets_keep_proportions_and_nesting():
    strata = np.array(["a"] * 700 + ["b"] * 250 + ["c"] * 50)
    subsets = nested_subsets(1000, [0.1, 0.2, 0.5, 1.0], seed=2, strata=strata)
    for small, big in zip(subsets, subsets[1:]):
        assert np.isin(small, big).all()
    for s in subsets:
        for k, share in (("a", 0.7), ("b", 0.25), ("c", 0.05)):
            assert abs(np.sum(strata[s] == k) - share * len(s)) <= 1.5


def test_nested_subsets_bad_fractions():
    with pytest.raises(UsageError, match="fractions"):
        nested_subsets(10, [0.5, 1.2])
