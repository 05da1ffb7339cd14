"""`thresher size | sample | check` through the CLI: per-stratum sizes, optimal
allocation with costs, the systematic phase-lock warning, estimate notes and
stratum keys."""
import json

import numpy as np
import pytest

from tests.helpers import run_cli
from thresher.cli.app import main


def run(args, capsys):
    """Run the CLI in-process; returns (exit code, stdout, stderr)."""
    return run_cli(args, capsys, main)


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


# -- thresher size --strata ------------------------------------------------------
def test_size_strata_prints_a_table_without_json(capsys):
    strata = '{"qa": 100, "code": 10000, "chat": 1000}'
    code, out, err = run(["size", "--margin", "0.05", "--strata", strata], capsys)
    assert code == 0, err
    rows = {line.split("│")[1].strip(): line.split("│")[3].strip() for line in out.splitlines() if line.count("│") == 4}
    assert rows == {"qa": "80", "code": "370", "chat": "278"} and "stratum" in out
    assert "total n = 728" in out
    code, out, _ = run(["size", "--margin", "0.05", "--strata", strata, "--json"], capsys)
    data = json.loads(out)
    assert data["total"] == 728 and {k: v["n"] for k, v in data["strata"].items()} == {"qa": 80, "code": 370, "chat": 278}


@pytest.mark.parametrize("strata, message", [('{"qa": 100', "JSON object"), ("[100]", "JSON object"),
                                              ('{"qa": 0.5}', "stratum 'qa'")])
def test_size_bad_strata_exit_2(capsys, strata, message):
    code, _, err = run(["size", "--margin", "0.05", "--strata", strata], capsys)
    assert code == 2 and message in err and "Traceback" not in err


# -- optimal allocation with costs ---------------------------------------------
SD = {"a": 1.0, "b": 3.0, "c": 10.0}
COST = {"a": 1, "b": 4, "c": 9}
SIZES = {"a": 600, "b": 300, "c": 100}


@pytest.fixture
def cost_pool(tmp_path):
    rng = np.random.default_rng(1)
    rows = [{"instruction": f"q {cat}{i}", "output": "x", "category": cat, "y": float(rng.normal(0, SD[cat])),
             "cost": COST[cat]} for cat, size in SIZES.items() for i in range(size)]
    rng.shuffle(rows)
    return write_jsonl(tmp_path / "pool.jsonl", rows)


def _textbook(pool_path, n):
    """n_h ∝ N_h·S_h/sqrt(c_h), with S_h the stratum sd (ddof=1) of the pool."""
    rows = [json.loads(line) for line in pool_path.read_text().splitlines()]
    share = {}
    for cat in SIZES:
        y = np.array([r["y"] for r in rows if r["category"] == cat])
        share[cat] = len(y) * y.std(ddof=1) / np.sqrt(COST[cat])
    total = sum(share.values())
    return {cat: n * s / total for cat, s in share.items()}


@pytest.mark.parametrize("cost_args", [["--cost", "cost"], ["--costs", json.dumps(COST)]])
def test_optimal_allocation_from_the_cli_follows_the_textbook_rule(tmp_path, cost_pool, capsys, cost_args):
    out = tmp_path / "opt.jsonl"
    code, text, err = run(["sample", cost_pool, "--design", "stratified", "--by", "category", "--allocation",
                           "optimal", "--variance-of", "y", "--n", 150, "--json", "-o", out] + cost_args, capsys)
    assert code == 0, err
    strata = {s["stratum"]: s for s in json.loads(text)["strata"]}
    expect = _textbook(cost_pool, 150)
    for cat, real in expect.items():
        assert strata[cat]["target"] == pytest.approx(real, rel=1e-6)
        assert abs(strata[cat]["selected"] - real) < 1  # largest remainder: floor or ceil
    assert sum(s["selected"] for s in strata.values()) == 150
    # Costlier strata get fewer rows than Neyman would give them.
    code, text, _ = run(["sample", cost_pool, "--design", "stratified", "--by", "category", "--allocation",
                         "neyman", "--variance-of", "y", "--n", 150, "--json", "-o", tmp_path / "ney.jsonl"], capsys)
    neyman = {s["stratum"]: s["selected"] for s in json.loads(text)["strata"]}
    assert strata["c"]["selected"] < neyman["c"] and strata["a"]["selected"] > neyman["a"]


@pytest.mark.parametrize("extra, message", [
    ([], "needs per-stratum costs"),
    (["--cost", "cost", "--costs", '{"a": 1}'], "not both"),
    (["--costs", '{"a": 1'], "--costs must be a JSON object"),
    (["--costs", '[1, 2]'], "--costs must be a JSON object"),
    (["--costs", '{"a": 1, "b": 2}'], "cost has no value for stratum 'c'"),
    (["--costs", '{"a": 1, "b": 2, "c": 0}'], "must be a positive number"),
    (["--cost", "y"], "must be a positive cost per row"),
    (["--cost", "nope"], "no field 'nope'"),
])
def test_optimal_allocation_cost_errors_exit_2(tmp_path, cost_pool, capsys, extra, message):
    code, _, err = run(["sample", cost_pool, "--design", "stratified", "--by", "category", "--allocation", "optimal",
                        "--variance-of", "y", "--n", 50, "-o", tmp_path / "x.jsonl"] + extra, capsys)
    assert code == 2 and message in err, err


def test_costs_without_optimal_allocation_exit_2(tmp_path, cost_pool, capsys):
    code, _, err = run(["sample", cost_pool, "--design", "stratified", "--by", "category", "--cost", "cost",
                        "--n", 50, "-o", tmp_path / "x.jsonl"], capsys)
    assert code == 2 and "only used by allocation='optimal'" in err


# -- systematic: phase lock on a period-10 pool --------------------------------------
@pytest.fixture(scope="module")
def periodic_pool(tmp_path_factory):
    rng = np.random.default_rng(0)
    rows = [{"instruction": f"q{i}", "output": "x", "y": float(i % 10 + rng.normal(0, 0.5))} for i in range(10_000)]
    return write_jsonl(tmp_path_factory.mktemp("periodic") / "pool.jsonl", rows)


def _systematic(pool, out, n, seed, capsys, *extra):
    code, text, err = run(["sample", pool, "--design", "systematic", "--check-field", "y", "--n", n,
                           "--seed", seed, "-o", out, "--overwrite", *extra], capsys)
    assert code == 0, err
    return text, json.loads(out.with_suffix(".manifest.json").read_text())["diagnostics"]["periodicity"]


@pytest.mark.parametrize("n, interval, phases", [(2000, 5, 2), (1500, 6.67, 3), (1250, 8, 5), (1000, 10, 1)])
def test_phase_lock_warns_for_every_interval_that_visits_some_phases(tmp_path, periodic_pool, capsys, n,
                                                                     interval, phases):
    for seed in (0, 1):
        text, per = _systematic(periodic_pool, tmp_path / "s.jsonl", n, seed, capsys)
        assert per["period"] == 10 and per["phases_covered"] == phases
        assert per["lock_error_ratio"] > 3 and "warning" in per
        assert f"visit only {phases} of the 10 phases" in text and "--variable-intervals" in text


def test_no_phase_lock_warning_when_every_phase_is_visited(tmp_path, periodic_pool, capsys):
    text, per = _systematic(periodic_pool, tmp_path / "s.jsonl", 1429, 0, capsys)  # interval 7: all 10 phases
    assert per["period"] == 10 and per["phases_covered"] == 10 and "warning" not in per and "warning:" not in text
    text, per = _systematic(periodic_pool, tmp_path / "v.jsonl", 1250, 0, capsys, "--variable-intervals")
    assert per["period"] == 10 and "warning" not in per and "warning:" not in text


# -- estimate output: t intervals and strata without rows ------------------------
def test_estimate_says_when_a_stratum_got_no_rows(tmp_path, capsys):
    rows = [{"instruction": f"q{i}", "output": "a", "cat": "big" if i < 95 else "tiny", "y": float(i % 7)}
            for i in range(100)]
    pool = write_jsonl(tmp_path / "pool.jsonl", rows)
    args = ["sample", pool, "--design", "stratified", "--by", "cat", "--n", 10, "--estimate", "y"]
    code, text, err = run(args + ["-o", tmp_path / "a.jsonl"], capsys)
    assert code == 0, err
    assert "note: 1 stratum(s) got no rows: 'tiny' (5 pool rows)" in text
    code, text, _ = run(args + ["-o", tmp_path / "b.jsonl", "--json"], capsys)
    est = json.loads(text)["estimate"]
    assert est["df"] == 9 and any("'tiny'" in note for note in est["notes"])
    q = (est["ci_high"] - est["mean"]) / est["se_mean"]
    assert q == pytest.approx(2.262157, rel=1e-6)  # Student t, 9 df (n - H with one stratum sampled)


# -- stratum keys ----------------------------------------------------------------
def test_null_and_literal_missing_are_separate_strata_end_to_end(tmp_path, capsys):
    cats = ["missing"] * 40 + [None] * 40 + ["<null>"] * 20 + ["a|b"] * 20
    rows = [{"instruction": f"q{i}", "output": "x", "category": c, "lang": "en|fr" if i % 2 else "en"}
            for i, c in enumerate(cats)]
    pool = write_jsonl(tmp_path / "pool.jsonl", rows)
    out = tmp_path / "s.jsonl"
    code, _, err = run(["sample", pool, "--design", "stratified", "--by", "category", "--n", 60, "-o", out], capsys)
    assert code == 0, err
    strata = {s["stratum"]: (s["pool"], s["selected"]) for s in json.loads(out.with_suffix(".manifest.json").read_text())["strata"]}
    assert strata == {"missing": (40, 20), "<null>": (40, 20), "\\<null>": (20, 10), "a\\|b": (20, 10)}
    code, text, err = run(["check", out, "--against", pool, "--by", "category,lang", "--json"], capsys)
    assert code == 0, err
    cells = {f["field"]: {c["category"] for c in f["categories"]} for f in json.loads(text)["fields"]}
    assert cells["category"] == {"missing", "<null>", "\\<null>", "a\\|b"}
    assert len(cells["category|lang"]) == 8 and "a\\|b|en\\|fr" in cells["category|lang"]
