"""Coverage guard: per-category report, warnings, enforcement that keeps the budget."""
from __future__ import annotations

import numpy as np
import pytest

from thresher.data.dataset import Dataset
from thresher.errors import UsageError
from thresher.pipeline.coverage import CoverageSpec
from thresher.pipeline.runner import StepSpec, run_steps


def pool(sizes: dict[str, int], long: str = "big") -> Dataset:
    """Rows of each task; the `long` task has the longest answers (a length selector empties the rest)."""
    rows = []
    for task, k in sizes.items():
        for i in range(k):
            words = 40 + i if task == long else 1 + i % 3
            rows.append({"instruction": f"{task} question {i}", "output": " ".join(["word"] * words), "task": task})
    return Dataset.from_records(rows)


def run(ds, steps, coverage, tmp_path):
    from thresher.features.store import FeatureStore

    return run_steps(ds, [StepSpec(n, p) for n, p in steps], store=FeatureStore(tmp_path), coverage=coverage)


def test_warns_when_a_selector_empties_categories(tmp_path):
    ds = pool({"big": 100, "small": 20, "tiny": 3})
    res = run(ds, [("length", {"n": 30})], CoverageSpec(), tmp_path)
    cov = res.coverage
    assert cov["by"] == "task" and cov["source"] == "field" and not cov["enforced"]
    per = {r["category"]: r for r in cov["per_category"]}
    assert per["small"] == {"category": "small", "pool": 20, "available": 20, "kept": 0, "floor": 5, "ok": False}
    assert per["tiny"]["floor"] == 3 and cov["below"] == ["small", "tiny"] and cov["vanished"] == ["small", "tiny"]
    assert "small 0/20" in cov["warnings"][0]
    assert res.trace[0]["coverage"]["per_category"]["big"] == [100, 30]


def test_enforce_tops_up_with_the_steps_own_ranking_and_keeps_the_budget(tmp_path):
    ds = pool({"big": 100, "small": 20, "tiny": 3})
    res = run(ds, [("length", {"n": 30})], CoverageSpec(min=5, enforce=True), tmp_path)
    task = np.asarray(ds.column("task").to_pylist())
    kept = task[res.selection.indices]
    assert len(res.selection) == 30
    assert (kept == "small").sum() == 5 and (kept == "tiny").sum() == 3 and (kept == "big").sum() == 22
    assert res.coverage["below"] == [] and res.coverage["min_kept"] == 3
    # the top-up re-ran `length` on "small": its 5 longest rows, not random ones
    small = np.flatnonzero(task == "small")
    words = np.array([1 + i % 3 for i in range(20)])
    got = np.intersect1d(res.selection.indices, small) - small[0]
    assert set(words[got]) == {3}
    entry = res.trace[0]
    assert entry["coverage"]["added"] == {"small": 5, "tiny": 3} and entry["coverage"]["dropped"] == {"big": 8}
    assert entry["removed"]["coverage: swapped out for a category under its floor"] == 8
    assert sum(entry["removed"].values()) == len(ds) - 30


def test_filters_are_only_held_to_not_vanishing(tmp_path):
    rows = [{"instruction": "same", "output": "same", "task": "dup"}] * 10 + \
           [{"instruction": f"q{i}", "output": f"a{i}", "task": "uniq"} for i in range(10)] + \
           [{"instruction": f"e{i}", "output": "", "task": "empty"} for i in range(4)]
    ds = Dataset.from_records(rows)
    res = run(ds, [("dedup", {"kind": "exact"}), ("quality", {"where": "not empty_response"})],
              CoverageSpec(min=5, enforce=True), tmp_path)
    cov = res.coverage
    per = {r["category"]: r for r in cov["per_category"]}
    assert per["dup"]["kept"] == 1 and per["dup"]["ok"]  # 10 copies of one row: dedup is not a coverage loss
    assert cov["vanished"] == ["empty"] and "removed every row of 1 of 3 task values" in cov["warnings"][0]


def test_floors_larger_than_the_budget_are_an_error(tmp_path):
    ds = pool({"a": 10, "b": 10, "c": 10})
    with pytest.raises(UsageError, match="needs 15 rows, more than the budget"):
        run(ds, [("length", {"n": 12})], CoverageSpec(min=5, enforce=True), tmp_path)


def test_token_budget_is_kept_after_repair(tmp_path):
    ds = pool({"big": 50, "small": 20})
    res = run(ds, [("length", {"tokens": 400})], CoverageSpec(min=4, enforce=True), tmp_path)
    from thresher.selection.base import load_features
    from thresher.features.store import FeatureStore

    tokens = load_features(ds, ["tokens"], store=FeatureStore(tmp_path))["tokens"]
    task = np.asarray(ds.column("task").to_pylist())
    assert tokens[res.selection.indices].sum() <= 400
    assert (task[res.selection.indices] == "small").sum() >= 4


def test_clusters_when_the_pool_has_no_task_field(tmp_path):
    rows = [{"instruction": f"question {i} about {w}", "output": "answer " * (1 + i % 5)}
            for i, w in enumerate(["cats", "stocks", "python", "soup"] * 25)]
    res = run(Dataset.from_records(rows), [("length", {"n": 10})], CoverageSpec(), tmp_path)
    assert res.coverage["source"] == "clusters" and res.coverage["categories"] >= 2


def test_spec_parsing():
    assert CoverageSpec.parse({"min": 3}) == CoverageSpec(min=3, enforce=True)
    assert CoverageSpec.parse({"min": 3, "enforce": False}).enforce is False
    assert CoverageSpec.parse(None) == CoverageSpec() and CoverageSpec.parse(False).off
    with pytest.raises(UsageError, match="unknown key"):
        CoverageSpec.parse({"minimum": 3})
    with pytest.raises(UsageError, match="non-negative"):
        CoverageSpec.parse({"min": -1})
