"""One cached pass per held-out row: the same numbers as scoring every label separately."""
from __future__ import annotations

import numpy as np
import pytest

from tests.train.conftest import heavier_rows
from thresher.train.examples import Examples
from thresher.train.metrics import evaluate_model, label_logprobs, response_loss
from thresher.train.scoring import row_label_sets, score_rows


@pytest.mark.parametrize("fixture", ["tiny_lm", "tiny_plain_lm"])
@pytest.mark.parametrize("batch_size", [1, 5])
def test_cached_label_scores_equal_the_reference(fixture, batch_size, request):
    model, tok = request.getfixturevalue(fixture)
    prompts, answers = heavier_rows(23, seed=3)
    prompts = [p * (1 + i % 4) for i, p in enumerate(prompts)]  # uneven lengths: left padding matters
    labels = ["No", "Yes", "Maybe so"]
    ref = label_logprobs(model, tok, prompts, labels, max_length=512, batch_size=4)
    got = score_rows(model, tok, Examples(prompts, answers), [labels] * len(prompts), max_length=512,
                     batch_size=batch_size)
    np.testing.assert_allclose([[got.logprobs[i][lab] for lab in labels] for i in range(len(prompts))], ref,
                               atol=1e-4)
    assert got.nll.sum() / got.tokens.sum() == pytest.approx(
        response_loss(model, tok, Examples(prompts, answers), max_length=512)["loss"], rel=1e-5)
    assert [p for p in got.pred] == [labels[k] for k in ref.argmax(axis=1)]


def test_free_text_rows_get_the_plain_loss(tiny_lm):
    model, tok = tiny_lm
    prompts, answers = heavier_rows(8, seed=1)
    answers[3] = "a free text answer that is not a label"
    ex = Examples(prompts, answers)
    row_labels = row_label_sets(ex, ["No", "Yes"])
    assert row_labels[3] is None and row_labels[0] == ["No", "Yes"]
    got = score_rows(model, tok, ex, row_labels)
    assert got.truth[3] is None and got.pred[3] is None
    assert got.nll.sum() / got.tokens.sum() == pytest.approx(response_loss(model, tok, ex)["loss"], rel=1e-5)


def test_label_sets_are_found_per_task():
    prompts = [f"q{i}" for i in range(12)]
    answers = ["Yes", "No"] * 3 + ["A", "B", "C"] * 2
    tasks = ["yesno"] * 6 + ["abc"] * 6
    sets = row_label_sets(Examples(prompts, answers, tasks=tasks))
    assert sets[0] == ["No", "Yes"] and sets[6] == ["A", "B", "C"]
    # a task field that is the label itself (one answer per task) falls back to one set
    topic = row_label_sets(Examples(prompts[:8], ["law", "math"] * 4, tasks=["law", "math"] * 4))
    assert topic[0] == ["law", "math"]


def test_evaluate_model_scores_each_row_on_its_own_tasks_labels(tiny_lm):
    model, tok = tiny_lm
    prompts = [f"Is a brick heavier than a leaf? {i}" for i in range(8)]
    answers = ["Yes", "No", "Yes", "No", "A", "B", "A", "B"]
    ex = Examples(prompts, answers, tasks=["yn"] * 4 + ["ab"] * 4)
    out = evaluate_model(model, tok, ex, keep_rows=True)
    assert out["label_set"] == ["A", "B", "No", "Yes"] and out["label_rows"] == 8
    rows = out["rows"]
    assert set(rows.logprobs[0]) == {"No", "Yes"} and set(rows.logprobs[5]) == {"A", "B"}
    assert all(rows.pred[i] in ("Yes", "No") for i in range(4))
