"""dedup --against: exact and near overlaps with an eval set are removed and counted."""
from __future__ import annotations

import json

import numpy as np
import pytest

from thresher.data.dataset import Dataset
from thresher.errors import UsageError
from thresher.features.minhash import cross_matches, minhash_signatures
from thresher.selection.dedup import DedupSelector

WORDS = ("alpha beta gamma delta epsilon zeta eta theta iota kappa lambda mu nu xi omicron pi rho sigma tau "
         "upsilon phi chi psi omega river stone cloud fire water earth wind tree leaf root branch").split()


def sentence(rng, k=25):
    return " ".join(rng.choice(WORDS, size=k))


def edit(rng, text: str) -> str:
    """A light edit: case, punctuation and one word replaced."""
    words = text.split()
    words[int(rng.integers(len(words)))] = "CHANGED"
    return " ".join(words).capitalize() + "?!"


def test_planted_overlaps_are_found(tmp_path):
    rng = np.random.default_rng(0)
    evals = [sentence(rng) for _ in range(40)]
    pool = [sentence(rng) for _ in range(300)]
    for j in range(20):  # 10 exact copies, 10 lightly edited
        pos = int(rng.integers(len(pool)))
        pool.insert(pos, evals[j] if j < 10 else edit(rng, evals[j]))
    rows = [{"instruction": p, "output": "ok"} for p in pool]
    planted = {i for i, p in enumerate(pool) if p in evals[:10] or p.endswith("?!")}
    eval_file = tmp_path / "eval.jsonl"
    eval_file.write_text("".join(json.dumps({"instruction": e, "output": "x"}) + "\n" for e in evals))
    ds = Dataset.from_records(rows)
    sel = DedupSelector(kind="near", against=str(eval_file)).select(ds)
    removed = set(range(len(ds))) - set(sel.indices.tolist())
    assert removed == planted
    d = sel.diagnostics
    assert d["overlap_exact"] == 10 and d["overlap_near"] == 10 and d["eval_rows_hit"] == 20 and d["eval_rows"] == 40
    assert "overlaps the eval set: exact (prompt)" in sel.removed
    exact_only = DedupSelector(kind="exact", against=str(eval_file)).select(ds)
    assert exact_only.diagnostics["overlap_exact"] == 10 and exact_only.diagnostics["overlap_near"] == 0


def test_fields_choose_the_compared_text(tmp_path):
    rows = [{"instruction": "What is two plus two", "output": "four"},
            {"instruction": "Something else entirely here", "output": "four"}]
    eval_ds = Dataset.from_records([{"instruction": "unrelated question text", "output": "four"}])
    by_prompt = DedupSelector(kind="exact", against=eval_ds).select(Dataset.from_records(rows))
    assert len(by_prompt) == 2
    by_output = DedupSelector(kind="exact", against=eval_ds, fields=["output"]).select(Dataset.from_records(rows))
    assert len(by_output) == 0 and by_output.diagnostics["fields"] == "output"


def test_cross_matches_only_pairs_query_with_reference():
    rng = np.random.default_rng(1)
    ref = [sentence(rng) for _ in range(30)]
    query = [ref[3], sentence(rng), "", ref[7]]
    jac, match = cross_matches(minhash_signatures(query, 128, 3), minhash_signatures(ref, 128, 3), 0.8)
    assert match.tolist() == [3, -1, -1, 7] and jac[0] == 1.0 and jac[1] == 0.0


def test_errors(tmp_path):
    with pytest.raises(UsageError, match="not semantic"):
        DedupSelector(kind="semantic", against="x.jsonl")
    with pytest.raises(UsageError, match="no such file"):
        DedupSelector(against=str(tmp_path / "missing.jsonl")).select(Dataset.from_records([{"text": "a"}]))
    with pytest.raises(UsageError, match="jaccard"):
        DedupSelector(against="x", jaccard=1.5)
    with pytest.raises(UsageError, match="no field 'nosuch'"):
        DedupSelector(against=Dataset.from_records([{"text": "a"}]), fields=["nosuch"]).select(
            Dataset.from_records([{"text": "a"}]))
