"""Gathering a RUN: manifests, pools, selected rows, results files, and what to plot."""
import json
from pathlib import Path

import numpy as np
import pytest

from thresher.errors import InputError, UsageError
from thresher.report.collect import RunData, category_field, collect, pool_features, step_features
from tests.report.test_html import active_trajectory, compare_results, curve_results


def write_pool(path: Path, n: int = 80, dup_every: int = 0) -> Path:
    rows = [{"instruction": f"question {i}", "input": "", "output": f"answer number {i}",
             "category": "abc"[i % 3], "task": "t" + str(i % 2)} for i in range(n)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def sampled(tmp_path: Path, n: int = 20, design: str = "random", **params):
    from thresher.api import read, sample, write_selection

    pool = read(write_pool(tmp_path / "pool.jsonl"))
    sel = sample(pool, design, n=n, seed=3, **params)
    written = write_selection(pool, sel, tmp_path / "out" / "s.jsonl", command="sample")
    return pool, sel, written


def test_manifest_subset_and_folder_all_find_the_same_run(tmp_path):
    pool, sel, written = sampled(tmp_path)
    for run in (written.manifest, written.output, written.output.parent):
        data = collect(run)
        assert data.manifest_path == written.manifest
        assert len(data.pool) == 80
        assert np.array_equal(np.sort(data.selected), np.sort(sel.indices))


def test_with_replacement_keeps_repeated_rows(tmp_path):
    pool, sel, written = sampled(tmp_path, n=60, replace=True)
    data = collect(written.manifest)
    assert len(np.unique(sel.indices)) < 60  # the design drew repeats
    assert np.array_equal(np.sort(data.selected), np.sort(sel.indices))


def test_pool_is_found_relative_to_the_manifest(tmp_path, monkeypatch):
    pool, sel, written = sampled(tmp_path)
    manifest = json.loads(written.manifest.read_text())
    manifest["input"]["path"] = "../pool.jsonl"  # relative to the manifest's folder, not the working one
    written.manifest.write_text(json.dumps(manifest))
    monkeypatch.chdir("/")
    data = collect(written.manifest)
    assert data.pool is not None and data.pool_note is None


def test_missing_or_changed_pool_is_a_note_not_an_error(tmp_path):
    pool, sel, written = sampled(tmp_path)
    (tmp_path / "pool.jsonl").write_text((tmp_path / "pool.jsonl").read_text() + json.dumps(
        {"instruction": "new", "input": "", "output": "row", "category": "a", "task": "t0"}) + "\n")
    data = collect(written.manifest)
    assert data.pool is None and "changed since the run" in data.pool_note
    (tmp_path / "pool.jsonl").unlink()
    data = collect(written.manifest)
    assert data.pool is None and "not found" in data.pool_note


def test_results_files_are_sorted_by_kind(tmp_path):
    (tmp_path / "results.json").write_text(json.dumps(compare_results()))
    (tmp_path / "curve").mkdir()
    (tmp_path / "curve" / "results.json").write_text(json.dumps(curve_results()))
    (tmp_path / "trajectory.json").write_text(json.dumps(active_trajectory()))
    data = collect(tmp_path)
    assert sorted(r["kind"] for r in data.results) == ["compare", "curve"]
    assert data.trajectory["kind"] == "active" and data.manifest is None
    assert collect(tmp_path / "trajectory.json").trajectory is not None


def test_bad_runs_get_actionable_errors(tmp_path):
    with pytest.raises(UsageError, match="no such file"):
        collect(tmp_path / "nope")
    with pytest.raises(UsageError, match="found no manifest"):
        collect(tmp_path)
    (tmp_path / "a.manifest.json").write_text(json.dumps({"input": {}}))
    (tmp_path / "b.manifest.json").write_text(json.dumps({"input": {}}))
    with pytest.raises(UsageError, match="several manifests"):
        collect(tmp_path)
    (tmp_path / "x.jsonl").write_text("{}\n")
    with pytest.raises(UsageError, match="no x.manifest.json beside it"):
        collect(tmp_path / "x.jsonl")
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "results.json").write_text("{not json")
    with pytest.raises(InputError, match="results.json"):
        collect(broken)


def test_category_field_precedence(tmp_path):
    pool, sel, written = sampled(tmp_path, design="stratified", by=["task"])
    data = collect(written.manifest)
    assert category_field(data, "category")[0] == "category"  # --by wins
    data.manifest = {"method": "stratified", "params": {"by": ["task"]}, "input": {}}
    assert category_field(data)[0] == "task"
    data.manifest = {"method": "kcenter", "params": {"n": 5}, "input": {}}
    assert category_field(data) == ("category", "the pool's 'category' field")
    from thresher.data.dataset import Dataset

    data.pool = Dataset.from_records([{"prompt": "p", "completion": "c"}])
    field, why = category_field(data)
    assert field is None and "no category/task/label field" in why


def test_step_features_and_thresholds_from_the_trace():
    data = RunData("x", manifest={"seed": 0, "input": {}, "trace": [
        {"step": "dedup", "params": {"kind": "exact"}},
        {"step": "quality", "params": {"where": "not empty_response and response_words >= 3 and "
                                                "(rep_ngram_ratio < 0.5 or chars > 10)"}},
        {"step": "ifd", "params": {"max_ifd": 0.9, "n": 10}},
        {"step": "kcenter", "params": {"n": 5}},
    ]})
    used, thresholds = step_features(data)
    assert "exact_hash" not in used and "embedding" not in used  # ids and vectors are not scores
    assert {"empty_response", "response_words", "rep_ngram_ratio", "chars", "ifd"} <= set(used)
    rules = {(t["feature"], t["op"], t["value"]) for t in thresholds}
    assert rules == {("response_words", ">=", 3.0), ("rep_ngram_ratio", "<", 0.5), ("chars", ">", 10.0),
                     ("ifd", "<", 0.9)}


def test_single_method_run_uses_its_params():
    data = RunData("x", manifest={"seed": 0, "input": {}, "method": "quality",
                                  "params": {"where": "tokens <= 500"}})
    assert step_features(data) == (["tokens"], [{"feature": "tokens", "op": "<=", "value": 500.0,
                                                 "step": "quality"}])


def test_pool_features_never_run_the_language_model(tmp_path):
    from thresher.api import read

    pool = read(write_pool(tmp_path / "pool.jsonl", n=30))
    values, notes = pool_features(pool, ["response_words", "ifd", "nonexistent", "category"],
                                  cache_dir=str(tmp_path / "cache"))
    assert set(values) == {"response_words", "category"}
    assert np.array_equal(values["response_words"], np.full(30, 3))  # "answer number {i}"
    assert any("'ifd' is not in the feature cache" in n for n in notes)
    assert any("'nonexistent'" in n for n in notes)
