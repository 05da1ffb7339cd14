"""quality_score / complexity, field targeting, and deita with no --score on a bare Alpaca pool."""
from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pytest

from tests.helpers import run_cli
from thresher.data.dataset import Dataset
from thresher.errors import UsageError
from thresher.features.fields import OnFields, field_text, parse_fields, resolve_fields
from thresher.features.scores import Complexity, QualityScore, quality_score
from thresher.features.store import FeatureStore
from thresher.selection.base import load_features


def signals(**over):
    base = {"empty_response": [False], "truncated_response": [False], "rep_ngram_ratio": [0.0],
            "rep_line_ratio": [0.0], "non_alnum_ratio": [0.1], "upper_ratio": [0.1], "copy_overlap": [0.0],
            "response_chars": [50.0]}
    base.update(over)
    return {k: np.asarray(v) for k, v in base.items()}


@pytest.mark.parametrize("over,expected", [
    ({}, 1.0), ({"empty_response": [True]}, 0.0), ({"truncated_response": [True]}, 0.5),
    ({"rep_ngram_ratio": [0.5]}, 0.5), ({"rep_line_ratio": [1.0]}, 0.5), ({"non_alnum_ratio": [0.55]}, 0.5),
    ({"upper_ratio": [1.0]}, 0.5), ({"upper_ratio": [1.0], "response_chars": [2.0]}, 1.0),
    ({"copy_overlap": [1.0]}, 0.5),
])
def test_quality_factors(over, expected):
    assert quality_score(signals(**over))[0] == pytest.approx(expected)


def test_lm_factors():
    col = signals(ifd=[1.2, 0.6, np.nan], ppl_response=[10.0, 1e4, np.nan])
    col = {k: (np.repeat(v, 3) if len(v) == 1 else v) for k, v in col.items()}
    assert quality_score(col, lm=True).tolist() == pytest.approx([0.5, 0.3, 1.0])


def test_featurizers_on_a_pool(tmp_path):
    ds = Dataset.from_records([
        {"instruction": "Explain, step by step, why the sky is blue. Use at least three sentences?", "output": "Rayleigh scattering of sunlight."},
        {"instruction": "Hi", "output": ""},
        {"instruction": "Say it", "output": "the the the the the the the the the the the the"},
    ])
    store = FeatureStore(tmp_path)
    f = load_features(ds, ["quality_score", "complexity"], store=store)
    q, c = f["quality_score"], f["complexity"]
    assert q[1] == 0.0 and q[2] < 0.2 and q[0] > 0.9  # empty; all repeated n-grams
    assert c[0] > c[2] > 0.05 - 1e-9 and c.max() <= 1
    # lm="auto" uses the LM factors only when the lm features are cached for this pool
    assert QualityScore().bind(ds, store).lm is False
    assert Complexity().compute(pa.table({"prompt": [""]}))["complexity"].to_pylist() == [0.05]


def test_field_targeting_helpers():
    ds = Dataset.from_records([{"instruction": "Do X", "input": "data", "output": "done"}])
    assert parse_fields("instruction,input") == ["instruction", "input"] and parse_fields(None) == "both"
    assert resolve_fields(ds, ["instruction"]) == ["instruction"]
    chat = Dataset.from_records([{"messages": [{"role": "user", "content": "Do X"},
                                               {"role": "assistant", "content": "done"}]}])
    assert resolve_fields(chat, ["instruction"]) == "prompt" and resolve_fields(chat, ["output"]) == "response"
    with pytest.raises(UsageError, match="no field 'input'"):
        resolve_fields(chat, ["input"])
    batch = pa.table({"a": ["x", "", "z"], "b": ["1", "2", ""]})
    assert field_text(batch, ["a", "b"]).to_pylist() == ["x\n\n1", "2", "z"]


def test_on_fields_computes_response_signals_on_the_fields(tmp_path):
    ds = Dataset.from_records([{"instruction": "one two three four", "input": "", "output": "a"},
                               {"instruction": "one", "input": "", "output": "a b c d e f"}])
    f = load_features(ds, [OnFields("text", ["instruction"])], store=FeatureStore(tmp_path))
    assert f["response_words"].tolist() == [4, 1]
    assert load_features(ds, ["response_words"], store=FeatureStore(tmp_path))["response_words"].tolist() == [1, 6]


def test_dedup_and_quality_on_fields(tmp_path):
    from thresher.pipeline.runner import StepSpec, run_steps

    ds = Dataset.from_records([{"instruction": "same question", "output": f"answer {i}"} for i in range(5)] +
                              [{"instruction": f"q {i}", "output": "yes"} for i in range(3)])
    store = FeatureStore(tmp_path)
    by_instruction = run_steps(ds, [StepSpec("dedup", {"kind": "exact", "fields": ["instruction"]})], store=store)
    assert len(by_instruction.selection) == 4
    by_output = run_steps(ds, [StepSpec("dedup", {"kind": "exact", "fields": "output"})], store=store)
    assert len(by_output.selection) == 6
    near = run_steps(ds, [StepSpec("dedup", {"kind": "near", "fields": ["instruction"]})], store=store)
    assert len(near.selection) == 4
    long_prompts = run_steps(ds, [StepSpec("quality", {"where": "response_words >= 2", "fields": ["instruction"]})],
                             store=store)
    assert len(long_prompts.selection) == 8
    long_answers = run_steps(ds, [StepSpec("quality", {"where": "response_words >= 2"})], store=store)
    assert len(long_answers.selection) == 5


def test_deita_runs_with_no_score_on_a_bare_alpaca_pool(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("THRESHER_CACHE", str(tmp_path / "cache"))
    rng = np.random.default_rng(0)
    words = "sky blue water cold fire hot tree green explain list why how compare".split()
    path = tmp_path / "alpaca.jsonl"
    path.write_text("".join(json.dumps({"instruction": " ".join(rng.choice(words, 6)), "input": "",
                                        "output": " ".join(rng.choice(words, int(rng.integers(1, 30))))}) + "\n"
                            for _ in range(300)))
    code, out, err = run_cli(["select", path, "--method", "deita", "--n", "100", "-o", tmp_path / "o.jsonl",
                              "--json"], capsys)
    assert code == 0, err
    summary = json.loads(out)
    assert summary["rows"] == 100 and summary["coverage"]["source"] == "clusters"
    manifest = json.loads((tmp_path / "o.manifest.json").read_text())
    assert manifest["coverage"]["categories"] == summary["coverage"]["categories"]
    code, out, err = run_cli(["select", path, "--method", "deita", "--score", "quality", "--n", "10",
                              "-o", tmp_path / "p.jsonl"], capsys)
    assert code == 2 and "did you mean 'quality_score'" in err and "--features quality_score" in err
