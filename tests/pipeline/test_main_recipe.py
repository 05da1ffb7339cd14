"""The main job (examples/recipes/main.yaml) keeps every demo category."""
from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import yaml

import thresher.api as th

ROOT = Path(__file__).resolve().parents[2]


def test_main_recipe_keeps_every_category(tmp_path, monkeypatch):
    monkeypatch.chdir(ROOT)
    recipe = yaml.safe_load((ROOT / "examples/recipes/main.yaml").read_text())
    recipe["output"] = {"path": str(tmp_path / "selected.jsonl")}
    recipe.pop("report", None)
    path = tmp_path / "main.yaml"
    path.write_text(yaml.safe_dump(recipe))
    result = th.run_recipe(path, cache_dir=str(tmp_path / "cache"))
    assert result["rows"] == 1000
    pool = Counter(json.loads(line)["category"] for line in (ROOT / "examples/demo/pool.jsonl").open())
    kept = Counter(json.loads(line)["category"] for line in (tmp_path / "selected.jsonl").open())
    cov = result["coverage"]
    per = {r["category"]: r for r in cov["per_category"]}
    assert set(per) == set(pool)
    for category, n_pool in pool.items():
        # measured against what the category still had after dedup + quality (tech_support:
        # 1,050 rows but 10 unique), never against the raw pool count
        floor = min(5, per[category]["available"])
        assert per[category]["pool"] == n_pool
        assert kept[category] >= max(1, floor), (category, kept[category], per[category])
        assert kept[category] == per[category]["kept"]
    assert cov["below"] == [] and cov["vanished"] == [] and cov["warnings"] == []
    manifest = json.loads((tmp_path / "selected.manifest.json").read_text())
    assert manifest["coverage"]["min_kept"] >= 5
