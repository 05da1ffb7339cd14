"""Recipes: validation errors name the YAML line; the trace adds up."""
import json

import numpy as np
import pytest

from thresher.api import run_recipe
from thresher.errors import InputError


@pytest.fixture
def pool(tmp_path):
    rows = []
    for i in range(60):
        out = "" if i % 10 == 0 else f"answer number {i % 25} with some words"
        rows.append({"instruction": f"question {i % 25}", "input": "", "output": out, "task": "ab"[i % 2]})
    path = tmp_path / "pool.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _recipe(tmp_path, body: str):
    path = tmp_path / "r.yaml"
    path.write_text(body)
    return path


def test_trace_counts_add_up(tmp_path, pool):
    recipe = _recipe(tmp_path, f"""
data: {pool}
seed: 3
steps:
  - dedup: {{kind: exact}}
  - quality: {{where: "response_words >= 2"}}
  - sample: {{design: stratified, by: task, n: 10}}
output: {tmp_path / 'out.jsonl'}
""")
    result = run_recipe(recipe, cache_dir=str(tmp_path / "cache"), keep_removed=True)
    trace = result["trace"]
    assert trace[0]["rows_in"] == 60
    for a, b in zip(trace, trace[1:]):
        assert a["rows_out"] == b["rows_in"]
    for entry in trace:
        assert entry["rows_in"] - entry["rows_out"] == sum(entry["removed"].values())
    assert trace[-1]["rows_out"] == 10 == result["rows"]
    manifest = json.loads((tmp_path / "out.manifest.json").read_text())
    assert manifest["trace"] == trace and len(manifest["selected_ids"]) == 10
    removed = [json.loads(line) for line in (tmp_path / "out.removed.jsonl").read_text().splitlines()]
    assert len(removed) == 50 and {r["step"] for r in removed} == {"dedup", "quality", "sample"}
    # same seed, same bytes
    again = _recipe(tmp_path, recipe.read_text().replace("out.jsonl", "out2.jsonl"))
    run_recipe(again, cache_dir=str(tmp_path / "cache"))
    assert (tmp_path / "out.jsonl").read_bytes() == (tmp_path / "out2.jsonl").read_bytes()


@pytest.mark.parametrize("body, message, line", [
    ("data: X\nsteps:\n  - dedup: {kind: exact}\n  - nosuch: {n: 3}\noutput: o.jsonl\n", "unknown step 'nosuch'", 4),
    ("data: X\nsteps:\n  - dedup:\n      kind: exact\n      bogus: 1\noutput: o.jsonl\n", "unknown parameter(s) bogus", 3),
    ("data: X\nsteps: []\noutput: o.jsonl\nextra_key: 1\n", "extra_key", 4),
    ("data: X\nsteps:\n  - superfilter: {top_fraction: 0.5}\noutput: o.jsonl\n", "needs a budget", 3),
    ("data: X\nsteps:\n  - dedup: {kind: exact}\n  - deita: {score: nosuch, n: 3}\noutput: o.jsonl\n", "unknown feature or field 'nosuch'", 4),
])
def test_validation_errors_name_line(tmp_path, pool, body, message, line):
    recipe = _recipe(tmp_path, body.replace("X", str(pool)))
    with pytest.raises(InputError) as info:
        run_recipe(recipe, cache_dir=str(tmp_path / "cache"))
    assert message in str(info.value)
    assert str(info.value).startswith(f"{recipe}:{line}:")


def test_invalid_yaml(tmp_path):
    recipe = _recipe(tmp_path, "data: [unclosed\n")
    with pytest.raises(InputError) as info:
        run_recipe(recipe)
    assert "invalid YAML" in str(info.value)
