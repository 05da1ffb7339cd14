"""`thresher sample | size | check` end to end through the console entry point."""
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.helpers import run_cli
from thresher.cli.app import main

ROOT = Path(__file__).resolve().parents[2]
DEMO = ROOT / "examples" / "demo" / "pool.jsonl"


def run(args, capsys=None):
    """Run the CLI in-process; returns (exit code, stdout, stderr)."""
    return run_cli(args, capsys, main)


@pytest.fixture
def pool(tmp_path):
    rng = np.random.default_rng(0)
    path = tmp_path / "pool.jsonl"
    cats = rng.choice(["a", "b", "c"], size=300, p=[0.6, 0.3, 0.1])
    with path.open("w") as f:
        for i, c in enumerate(cats):
            f.write(json.dumps({"instruction": f"question {i}", "input": "", "output": f"answer {i % 50}",
                                "category": str(c), "group": f"g{i // 10}", "score": float(rng.gamma(2.0))}) + "\n")
    return path


def test_random_sample_writes_subset_and_manifest(tmp_path, pool, capsys):
    out = tmp_path / "picked.jsonl"
    code, _, err = run(["sample", pool, "--design", "random", "--n", 40, "--seed", 3, "-o", out], capsys)
    assert code == 0, err
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    man = json.loads((tmp_path / "picked.manifest.json").read_text())
    assert len(rows) == 40 == man["output"]["rows"]
    assert man["input"]["rows"] == 300 and man["input"]["format"] == "jsonl"
    assert man["input"]["record_format"] == "alpaca" and len(man["input"]["sha256"]) == 64
    assert man["method"] == "random" and man["seed"] == 3
    assert len(man["selected_ids"]) == 40 == len(set(man["selected_ids"]))
    assert man["pi"] == [40 / 300] * 40 and rows[0]["_pi"] == pytest.approx(40 / 300)
    assert rows[0]["_weight"] == pytest.approx(300 / 40)
    # output rows are in pool order
    numbers = [int(r["instruction"].split()[1]) for r in rows]
    assert numbers == sorted(numbers)


def test_same_seed_same_bytes_and_overwrite_guard(tmp_path, pool, capsys):
    a, b = tmp_path / "a.jsonl", tmp_path / "b" / "a.jsonl"
    args = ["sample", pool, "--design", "stratified", "--by", "category", "--n", 30, "--seed", 7]
    assert run(args + ["-o", a], capsys)[0] == 0
    assert run(args + ["-o", b], capsys)[0] == 0
    assert a.read_bytes() == b.read_bytes()
    man_a = json.loads((tmp_path / "a.manifest.json").read_text())
    man_b = json.loads((tmp_path / "b" / "a.manifest.json").read_text())
    man_a["output"].pop("path"), man_b["output"].pop("path")
    assert man_a == man_b
    code, _, err = run(args + ["-o", a], capsys)
    assert code == 2 and "exists; pass --overwrite" in err
    assert run(args + ["-o", a, "--overwrite", "--seed", 8], capsys)[0] == 0


def test_stratified_manifest_has_strata(tmp_path, pool, capsys):
    out = tmp_path / "s.jsonl"
    assert run(["sample", pool, "--design", "stratified", "--by", "category", "--n", 30, "-o", out], capsys)[0] == 0
    man = json.loads((tmp_path / "s.manifest.json").read_text())
    strata = {s["stratum"]: s for s in man["strata"]}
    assert sum(s["selected"] for s in strata.values()) == 30
    assert sum(s["pool"] for s in strata.values()) == 300


def test_bad_input_exit_2_one_line(tmp_path, capsys):
    bad = tmp_path / "data.jsonl"
    bad.write_text('{"instruction": "a", "output": "b"}\n{"instruction": "a", "output": ["b"]}\n')
    out = tmp_path / "o.jsonl"
    code, _, err = run(["sample", bad, "--n", 1, "-o", out], capsys)
    assert code == 2
    assert err.strip() == f"error: {bad}:2: field 'output' is a list, expected a string"
    assert not out.exists() and not (tmp_path / "o.manifest.json").exists()


def test_on_error_skip_writes_rejects(tmp_path, capsys):
    bad = tmp_path / "data.jsonl"
    bad.write_text('{"instruction": "a", "output": "b"}\n{oops\n{"instruction": "c", "output": "d"}\n')
    out = tmp_path / "o.jsonl"
    code, _, err = run(["sample", bad, "--n", 2, "-o", out, "--on-error", "skip"], capsys)
    assert code == 0, err
    rejects = [json.loads(line) for line in (tmp_path / "o.rejects.jsonl").read_text().splitlines()]
    assert rejects[0]["location"] == "line 2" and "invalid JSON" in rejects[0]["reason"]
    man = json.loads((tmp_path / "o.manifest.json").read_text())
    assert man["input"]["rejected_rows"] == 1 and man["input"]["rows"] == 2


def test_pps_writes_weights(tmp_path, pool, capsys):
    out = tmp_path / "p.jsonl"
    code, _, err = run(["sample", pool, "--design", "pps", "--size-by", "score", "--n", 50, "-o", out,
                        "--estimate", "score"], capsys)
    assert code == 0, err
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(rows) == 50
    assert all(r["_weight"] == pytest.approx(1 / r["_pi"]) for r in rows)
    man = json.loads((tmp_path / "p.manifest.json").read_text())
    assert "estimate" in man and man["estimate"]["field"] == "score"


@pytest.mark.parametrize("design, extra", [("cluster", ["--cluster-by", "group"]),
                                           ("systematic", ["--check-field", "score"])])
def test_other_designs_run(tmp_path, pool, capsys, design, extra):
    out = tmp_path / f"{design}.jsonl"
    code, _, err = run(["sample", pool, "--design", design, "--n", 40, "-o", out] + extra, capsys)
    assert code == 0, err
    assert out.exists()


def test_usage_errors_exit_2(tmp_path, pool, capsys):
    code, _, err = run(["sample", pool, "--design", "stratified", "--n", 5, "-o", tmp_path / "x.jsonl"], capsys)
    assert code == 2 and "--by" in err
    code, _, err = run(["sample", pool, "--n", 5, "--fraction", 0.1, "-o", tmp_path / "x.jsonl"], capsys)
    assert code == 2 and "exactly one budget" in err
    code, _, err = run(["sample", pool, "--n", 5000, "-o", tmp_path / "x.jsonl"], capsys)
    assert code == 2 and "300" in err


def test_output_never_replaces_input(pool, capsys):
    before = pool.read_bytes()
    code, _, err = run(["sample", pool, "--n", 5, "-o", pool, "--overwrite"], capsys)
    assert code == 2 and "overwrite the input" in err
    assert pool.read_bytes() == before


def test_size_json(capsys):
    code, out, _ = run(["size", "--margin", "0.05", "--confidence", "0.95", "--json"], capsys)
    assert code == 0 and json.loads(out)["n"] == 385
    code, out, _ = run(["size", "--population", "10000", "--margin", "0.05", "--json"], capsys)
    assert json.loads(out)["n"] == 370


def test_check_json(tmp_path, pool, capsys):
    out = tmp_path / "r.jsonl"
    assert run(["sample", pool, "--n", 150, "--seed", 1, "-o", out], capsys)[0] == 0
    code, text, err = run(["check", out, "--against", pool, "--by", "category", "--json"], capsys)
    assert code == 0, err
    report = json.loads(text)
    assert report["overall"] in ("ok", "warn")


def test_console_script_help_is_fast_and_works():
    proc = subprocess.run([sys.executable, "-m", "thresher.cli.app", "--help"], capture_output=True, text=True)
    assert proc.returncode == 0 and "sample" in proc.stdout


@pytest.mark.skipif(not DEMO.exists(), reason="demo data not built")
def test_demo_stratified(tmp_path, capsys):
    out = tmp_path / "demo.jsonl"
    code, _, err = run(["sample", DEMO, "--design", "stratified", "--by", "category", "--n", 500,
                        "--min-per-stratum", 2, "--seed", 0, "-o", out], capsys)
    assert code == 0, err
    man = json.loads((tmp_path / "demo.manifest.json").read_text())
    assert man["output"]["rows"] == 500
    assert all(s["selected"] >= min(2, s["pool"]) for s in man["strata"])


def test_kmeans_clusters_design(tmp_path, pool, capsys, monkeypatch):
    monkeypatch.setenv("THRESHER_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "k.jsonl"
    code, _, err = run(["sample", pool, "--design", "cluster", "--clusters", "kmeans:6", "--n", 60, "-o", out], capsys)
    assert code == 0, err
    man = json.loads((tmp_path / "k.manifest.json").read_text())
    assert man["params"]["cluster_by"] == "cluster" and man["output"]["rows"] > 0
    code, _, err = run(["sample", pool, "--design", "cluster", "--clusters", "dbscan", "--n", 6, "-o", out], capsys)
    assert code == 2 and "kmeans:K" in err
