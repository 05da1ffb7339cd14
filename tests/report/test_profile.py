"""`profile_dataset`: counts against direct computations on the demo pool, edge
cases, and the sampled near-duplicate estimate against the exact rate of a
planted pool (coverage of its interval over seeded repetitions)."""
from __future__ import annotations

import collections
import json
import string
import unicodedata
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from thresher.api import read
from thresher.data.dataset import Dataset
from thresher.errors import UsageError
from thresher.features.minhash import minhash_signatures, near_duplicate_clusters
from thresher.features.text import count_tokens
from thresher.report.profile import (
    NEAR_MINHASH_SEED,
    NEAR_NUM_PERM,
    NEAR_SHINGLE,
    near_rate_from_signatures,
    profile_dataset,
    wilson_interval,
)

DEMO = Path(__file__).resolve().parents[2] / "examples" / "demo" / "pool.jsonl"
TOP_KEYS = {"schema", "source", "rows", "fields", "lengths", "by", "categories", "duplicates", "near_duplicates",
            "quality", "label_style", "suggestions"}


@pytest.fixture(scope="module")
def demo_rows():
    return [json.loads(line) for line in DEMO.read_text().splitlines()]


@pytest.fixture(scope="module")
def demo_profile():
    return profile_dataset(read(DEMO))


def _norm(text: str) -> str:
    """The normalization `exact_dup` documents, written out character by character."""
    out = []
    for ch in text.lower():
        cat = unicodedata.category(ch)
        if ch in "\t\n\x0b\x0c\r\x1c\x1d\x1e\x1f" or cat[0] == "Z" or ch == "\x85":
            out.append(" ")
        elif ch in string.punctuation or cat[0] == "P" or cat in ("Cf", "Cc"):
            continue
        else:
            out.append(ch)
    return " ".join("".join(out).split())


# -- the demo pool ---------------------------------------------------------------
def test_demo_counts_match_direct_computation(demo_profile, demo_rows):
    p = demo_profile
    assert set(p) == TOP_KEYS and p["schema"] == "thresher.profile/1"
    assert p["rows"] == len(demo_rows) == 4647
    assert p["source"]["record_format"] == "alpaca" and p["source"]["file_format"] == "jsonl"
    assert [f["name"] for f in p["fields"]] == list(demo_rows[0])
    assert all(f["nulls"] == 0 and f["type"] == "string" for f in p["fields"])
    (cat,) = p["categories"]
    expected = collections.Counter(r["category"] for r in demo_rows)
    assert p["by"] == ["category"] and cat["classes"] == len(expected) == 32
    assert {c["value"]: c["count"] for c in cat["counts"]} == dict(expected)
    assert cat["counts"][0] == {"value": "tech_support", "count": 1050, "share": pytest.approx(1050 / 4647)}
    assert [c["count"] for c in cat["counts"]] == sorted(expected.values(), reverse=True)
    assert cat["imbalance_ratio"] == pytest.approx(1050 / 8)
    assert sorted(cat["thin"]) == sorted(k for k, v in expected.items() if v < 20)


def test_demo_exact_duplicates_match_a_counter_on_normalized_text(demo_profile, demo_rows):
    def prompt(r):
        return r["instruction"] + ("\n\n" + r["input"] if r["input"] else "")

    keys = collections.Counter((_norm(prompt(r)), _norm(r["output"])) for r in demo_rows)
    exact = demo_profile["duplicates"]["exact"]
    assert exact["duplicate_rows"] == len(demo_rows) - len(keys) == sum(v - 1 for v in keys.values())
    assert exact["groups"] == sum(v > 1 for v in keys.values())
    assert exact["rows_in_groups"] == sum(v for v in keys.values() if v > 1)
    assert exact["largest_group"] == max(keys.values())
    assert any("exact duplicates" in s and "--method dedup --kind exact" in s for s in demo_profile["suggestions"])


def test_demo_lengths_and_labels(demo_profile, demo_rows):
    lengths = demo_profile["lengths"]
    tokens = count_tokens(pa.array([r["output"] for r in demo_rows]))
    resp = lengths["response_tokens"]
    assert (resp["min"], resp["max"], resp["total"]) == (tokens.min(), tokens.max(), tokens.sum())
    assert resp["median"] == np.median(tokens) and resp["p95"] == pytest.approx(np.percentile(tokens, 95))
    assert sum(resp["counts"]) == sum(lengths["prompt_tokens"]["counts"]) == 4647
    assert lengths["bins"][-1] > max(resp["max"], lengths["prompt_tokens"]["max"])
    label_values = {h["value"] for h in demo_profile["label_style"]["categories"]}
    assert {"born_first", "rectangles", "which_is_heavier", "regex_match"} <= label_values
    assert "tech_support" not in label_values
    assert not demo_profile["label_style"]["pool"]
    text = " ".join(demo_profile["suggestions"])
    assert "imbalanced (max/min = 131x)" in text and "thresher balance" in text
    assert "--for-below 20" in text and "history (8)" in text


def test_profile_is_json_and_deterministic():
    ds = read(DEMO)
    a, b = profile_dataset(ds, seed=3, near_sample=500), profile_dataset(ds, seed=3, near_sample=500)
    assert json.loads(json.dumps(a)) == a == b
    assert a["near_duplicates"]["sample_rows"] == 500 and a["near_duplicates"]["seed"] == 3


# -- edge cases -----------------------------------------------------------------------
def test_one_row_one_category():
    ds = Dataset.from_records([{"instruction": "Hi", "output": "Hello there, friend.", "category": "greet"}])
    p = profile_dataset(ds)
    assert p["rows"] == 1 and p["categories"][0]["classes"] == 1
    assert p["duplicates"]["exact"]["duplicate_rows"] == 0
    near = p["near_duplicates"]
    assert near["exact"] and near["fraction"] == 0 and near["ci_low"] == near["ci_high"] == 0
    assert any("single value" in s for s in p["suggestions"])
    assert not any("imbalanced" in s for s in p["suggestions"])


def test_no_category_field_says_how_to_get_categories():
    ds = Dataset.from_records([{"prompt": f"q{i}", "completion": f"answer number {i} here"} for i in range(30)])
    p = profile_dataset(ds)
    assert p["by"] == [] and p["categories"] == []
    assert any("no category field" in s and "--by" in s for s in p["suggestions"])


def test_all_empty_responses():
    ds = Dataset.from_records([{"instruction": f"question {i}", "output": "", "category": "a"} for i in range(12)])
    p = profile_dataset(ds)
    assert p["quality"]["empty_responses"] == 12 and p["quality"]["truncated_responses"] == 0
    assert p["lengths"]["response_tokens"]["max"] == 0 and p["lengths"]["response_tokens"]["counts"][0] == 12
    assert not p["label_style"]["pool"]
    assert any(s.startswith("all 12 responses are empty") for s in p["suggestions"])


def test_missing_by_field_is_a_usage_error_naming_it():
    ds = Dataset.from_records([{"instruction": "a", "output": "b"}])
    with pytest.raises(UsageError, match="'topic'"):
        profile_dataset(ds, by=["topic"])
    with pytest.raises(UsageError, match="near_sample"):
        profile_dataset(ds, near_sample=0)


def test_several_fields_thin_imbalance_and_id_like():
    counts = {"a": 100, "b": 30, "health": 8}
    records = [{"instruction": f"q {c} {i}", "output": f"some answer {i} for {c}", "category": c, "lang": "en",
                "uid": f"{c}{i}"} for c, k in counts.items() for i in range(k)]
    p = profile_dataset(Dataset.from_records(records), by=["category", "lang", "uid"])
    assert p["by"] == ["category", "lang", "uid"] and [c["classes"] for c in p["categories"]] == [3, 1, 138]
    text = "\n".join(p["suggestions"])
    assert "category 'health' has 8 rows (5.8%)" in text and "--by category --for-below 20" in text
    assert "classes of 'category' are imbalanced" in text
    assert "'lang' has a single value" in text and "'uid' has 138 distinct values" in text


def test_label_style_pool_and_token_bins():
    records = [{"instruction": f"is {i} even?", "output": "Yes" if i % 2 == 0 else "No"} for i in range(40)]
    p = profile_dataset(Dataset.from_records(records))
    assert p["label_style"]["pool"] and p["label_style"]["distinct_responses"] == 2
    assert any("label-style" in s for s in p["suggestions"])
    bins = profile_dataset(Dataset.from_records([{"text": t} for t in ["", "a", "a b", "a b c d"]]))["lengths"]
    assert bins["bins"] == [0, 1, 2, 4, 8] and bins["response_tokens"]["counts"] == [1, 1, 1, 1]


def test_exact_duplicates_ignore_case_and_punctuation():
    records = [{"instruction": "Hello, World!", "output": "Fine."}, {"instruction": "hello world", "output": "fine"},
               {"instruction": "hello world", "output": "not fine"}]
    exact = profile_dataset(Dataset.from_records(records))["duplicates"]["exact"]
    assert exact["duplicate_rows"] == 1 and exact["groups"] == 1 and exact["rows_in_groups"] == 2


# -- near duplicates ---------------------------------------------------------------------
def _planted(n: int = 2000, pairs: int = 200, words: int = 80, seed: int = 0) -> tuple[list[str], np.ndarray]:
    """Random-word texts; `pairs` of them get a copy with one word changed
    (5-shingle Jaccard 71/81). Returns the texts (shuffled) and each row's
    planted partner (-1: none)."""
    rng = np.random.default_rng(seed)
    vocab = np.array([f"w{i}" for i in range(50_000)])
    texts = [" ".join(rng.choice(vocab, words)) for _ in range(n - pairs)]
    for i in range(pairs):
        tokens = texts[i].split()
        tokens[words // 2] = f"changed{i}"
        texts.append(" ".join(tokens))
    partner = np.full(n, -1)
    partner[:pairs], partner[n - pairs:] = np.arange(n - pairs, n), np.arange(pairs)
    order = rng.permutation(n)
    where = np.argsort(order)  # new position of each old row
    return [texts[i] for i in order], np.where(partner[order] >= 0, where[partner[order]], -1)


def _shingles(text: str, k: int = 5) -> set:
    t = text.split()
    return {tuple(t[i:i + k]) for i in range(len(t) - k + 1)}


@pytest.fixture(scope="module")
def planted():
    texts, partner = _planted()
    return texts, partner, minhash_signatures(texts, NEAR_NUM_PERM, NEAR_SHINGLE, NEAR_MINHASH_SEED)


def test_planted_truth_is_what_full_minhash_finds(planted):
    texts, partner, _ = planted
    rows = np.flatnonzero(partner >= 0)
    jac = [len(a & b) / len(a | b) for a, b in ((_shingles(texts[i]), _shingles(texts[partner[i]])) for i in rows)]
    assert len(rows) == 400 and min(jac) == max(jac) == pytest.approx(71 / 81)
    full = near_duplicate_clusters(texts)
    assert full.stats["rows_in_clusters"] == 400
    assert np.array_equal(np.flatnonzero(np.bincount(full.dup_cluster, minlength=len(texts))[full.dup_cluster] > 1),
                          rows)


def test_sampling_all_rows_is_exact(planted):
    texts, partner, sig = planted
    est = near_rate_from_signatures(sig, 10_000)
    assert est["exact"] and est["fraction"] == (partner >= 0).mean() == 0.2 and est["ci_low"] == est["ci_high"] == 0.2


def test_sampled_estimate_covers_the_exact_rate(planted):
    _, partner, sig = planted
    m, reps, p = 400, 40, (partner >= 0).mean()
    runs = [near_rate_from_signatures(sig, m, seed) for seed in range(reps)]
    covered = sum(r["ci_low"] <= p <= r["ci_high"] for r in runs)
    assert covered >= 34  # nominal 95% of 40: P(fewer than 34) ~ 0.5%
    se = np.sqrt(p * (1 - p) / m * (len(partner) - m) / (len(partner) - 1))
    assert abs(np.mean([r["fraction"] for r in runs]) - p) < 4 * se / np.sqrt(reps)
    widths = [r["ci_high"] - r["ci_low"] for r in runs]
    assert 2 * 1.6 * se < np.mean(widths) < 2 * 2.3 * se


def test_profile_near_estimate_on_planted_pool(planted):
    texts, partner, _ = planted
    p = profile_dataset(Dataset.from_records([{"text": t} for t in texts]), near_sample=500, seed=1)
    near = p["near_duplicates"]
    assert near["sample_rows"] == 500 and near["pool_rows"] == 2000
    assert near["ci_low"] <= (partner >= 0).mean() <= near["ci_high"]
    assert p["quality"]["empty_prompts"] is None  # text records have no prompt to be empty
    assert any("--kind near" in s for s in p["suggestions"])


def test_wilson_interval_edges():
    assert wilson_interval(0, 0, 10) == (0.0, 1.0)
    assert wilson_interval(3, 10, 10) == (0.3, 0.3)
    lo, hi = wilson_interval(0, 50, 1000)
    assert lo == 0.0 and 0.03 < hi < 0.1
    wide, narrow = wilson_interval(20, 100, 10**9), wilson_interval(20, 100, 200)
    assert narrow[1] - narrow[0] < 0.75 * (wide[1] - wide[0])  # finite-population correction


def test_suggested_commands_name_the_input_and_its_format(tmp_path):
    import pyarrow.parquet as pq

    path = tmp_path / "my pool.parquet"
    pq.write_table(pa.table({"prompt": ["a b c"] * 3 + ["d e f"], "completion": ["x y z"] * 4}), path)
    text = "\n".join(profile_dataset(read(path))["suggestions"])
    assert "2 rows (50.0%) are exact duplicates" in text
    assert "`thresher select 'PATH' --method dedup --kind exact -o deduped.parquet`".replace("PATH", str(path)) in text
