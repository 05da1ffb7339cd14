"""Held-out metrics: response loss, label scoring, per-class and generation metrics."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from thresher.errors import UsageError
from thresher.train import loss
from thresher.train.examples import Examples, encode
from thresher.train.metrics import (classification_metrics, detect_label_set, evaluate_model, generation_metrics,
                                    label_logprobs, normalize_answer, response_loss)

from .conftest import FREE_TEXT, heavier_rows


def test_classification_metrics_match_sklearn_on_a_hand_example():
    from sklearn.metrics import accuracy_score, confusion_matrix, f1_score, precision_recall_fscore_support

    y_true = ["Yes", "Yes", "No", "No", "No", "Maybe", "Yes", "No"]
    y_pred = ["Yes", "No", "No", "No", "Yes", "No", "Yes", "No"]
    labels = ["No", "Yes", "Maybe"]
    got = classification_metrics(y_true, y_pred, labels)
    assert got["accuracy"] == pytest.approx(5 / 8) == accuracy_score(y_true, y_pred)
    # by hand: No P=3/5 R=3/4; Yes P=2/3 R=2/3; Maybe P=0 R=0
    assert got["per_class"]["No"]["precision"] == pytest.approx(3 / 5)
    assert got["per_class"]["No"]["recall"] == pytest.approx(3 / 4)
    assert got["per_class"]["Yes"]["f1"] == pytest.approx(2 / 3)
    assert got["per_class"]["Maybe"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 1}
    f_no = 2 * (3 / 5) * (3 / 4) / (3 / 5 + 3 / 4)
    assert got["macro_f1"] == pytest.approx((f_no + 2 / 3 + 0) / 3)
    assert got["macro_f1"] == pytest.approx(f1_score(y_true, y_pred, labels=labels, average="macro", zero_division=0))
    p, r, f, s = precision_recall_fscore_support(y_true, y_pred, labels=labels, zero_division=0)
    assert [got["per_class"][k]["support"] for k in labels] == s.tolist() == [4, 3, 1]
    assert got["confusion"] == {"labels": labels,
                                "matrix": confusion_matrix(y_true, y_pred, labels=labels).tolist()}
    assert got["confusion"]["matrix"][0] == [3, 1, 0]  # true No: 3 No, 1 Yes
    with pytest.raises(UsageError):
        classification_metrics(["a"], ["a", "b"], ["a", "b"])


def test_detect_label_set_on_labels_and_free_text():
    _, answers = heavier_rows(50)
    assert detect_label_set(answers) == ["No", "Yes"]
    assert detect_label_set([a + "." for a in answers] + ["Maybe."] * 2) == ["Maybe.", "No.", "Yes."]
    assert detect_label_set([f" {a} " for a in answers]) == ["No", "Yes"]  # whitespace does not matter
    assert detect_label_set(FREE_TEXT * 10) is None  # long answers are not labels
    assert detect_label_set([f"answer number {i}" for i in range(100)]) is None  # all distinct
    noisy = answers[:40] + [f"a long free-text answer number {i}" for i in range(10)]
    assert detect_label_set(noisy) is None  # 80% coverage < 95%
    assert detect_label_set(noisy, min_coverage=0.8) == ["No", "Yes"]
    assert detect_label_set(["Yes"] * 20) is None  # one class is no classification
    assert detect_label_set([str(i % 12) for i in range(120)]) is None  # more than max_labels
    assert detect_label_set(["Yes", "No"]) is None  # too few rows to tell


def test_generation_metrics_squad_style():
    assert normalize_answer("The  Cat, sat!") == "cat sat"
    got = generation_metrics(["The cat.", "a dog ran", "", "blue"], ["cat", "the dog sat", "", "red"])
    # rows: EM 1, F1 1 | EM 0, F1 2*(1/2)(1/2)/1 = 0.5 | both empty: 1, 1 | 0, 0
    assert got["exact_match"] == pytest.approx(2 / 4)
    assert got["token_f1"] == pytest.approx((1 + 0.5 + 1 + 0) / 4)
    with pytest.raises(UsageError):
        generation_metrics(["a"], [])


def test_response_loss_matches_the_models_own_loss(tiny_lm):
    model, tok = tiny_lm
    ex = Examples(["Is a brick heavier than a leaf?", "Explain what a hash table is."],
                  ["Yes", "A hash table maps keys to values."])
    got = response_loss(model, tok, ex, batch_size=1)
    enc = encode(tok, ex)
    sums, counts = 0.0, 0
    with torch.no_grad():
        for ids, labels in zip(enc.input_ids, enc.labels):
            n = int((labels[1:] != -100).sum())
            out = model(input_ids=torch.from_numpy(ids[None]), labels=torch.from_numpy(labels[None]))
            sums, counts = sums + out.loss.item() * n, counts + n
    assert got["tokens"] == counts
    assert got["loss"] == pytest.approx(sums / counts, rel=1e-5)
    assert got["perplexity"] == pytest.approx(np.exp(got["loss"]))
    assert response_loss(model, tok, ex, batch_size=2)["loss"] == pytest.approx(got["loss"], rel=1e-5)


def test_fast_head_equals_full_logits(tiny_lm, monkeypatch):
    model, tok = tiny_lm
    prompts, answers = heavier_rows(12)
    ex = Examples(prompts, answers)
    fast = response_loss(model, tok, ex)
    monkeypatch.setattr(loss, "_PLAIN_HEAD_TYPES", frozenset())
    assert response_loss(model, tok, ex)["loss"] == pytest.approx(fast["loss"], rel=1e-5)


def test_label_logprobs_are_normalized_log_probabilities(tiny_lm):
    model, tok = tiny_lm
    prompts, _ = heavier_rows(5)
    lp = label_logprobs(model, tok, prompts, ["No", "Yes", "Maybe"])
    assert lp.shape == (5, 3) and np.all(lp <= 0)
    np.testing.assert_allclose(np.exp(lp).sum(axis=1), 1.0)
    # Un-normalized, each entry is minus the label's response loss sum.
    enc_loss = [response_loss(model, tok, Examples([prompts[0]], [lab]))
                for lab in ("No", "Yes", "Maybe")]
    raw = -np.array([r["loss"] * r["tokens"] for r in enc_loss])
    np.testing.assert_allclose(lp[0], raw - np.log(np.exp(raw).sum()), rtol=1e-5)
    no_end = label_logprobs(model, tok, prompts, ["No", "Yes", "Maybe"], with_end=False)
    assert not np.allclose(no_end, lp)
    assert label_logprobs(model, tok, [], ["a", "b"]).shape == (0, 2)
    with pytest.raises(UsageError, match="two distinct"):
        label_logprobs(model, tok, prompts, ["Yes", "Yes"])


def test_evaluate_model_reports_what_applies(tiny_lm):
    model, tok = tiny_lm
    prompts, answers = heavier_rows(20, seed=2)
    out = evaluate_model(model, tok, Examples(prompts, answers, labels=answers))
    assert out["n"] == 20 and out["label_set"] == ["No", "Yes"] and out["label_rows"] == 20
    assert set(out["loss_by_label"]) == {"No", "Yes"}
    assert sum(v["support"] for v in out["per_class"].values()) == 20
    assert 0 <= out["accuracy"] <= 1 and "exact_match" not in out
    free = evaluate_model(model, tok, Examples(FREE_TEXT[::2], FREE_TEXT[1::2] + ["x"]), generate=True,
                          max_new_tokens=3)
    assert "accuracy" not in free and "label_set" not in free
    assert 0 <= free["token_f1"] <= 1 and len(free["predictions"]) == 4
    forced = evaluate_model(model, tok, Examples(prompts, answers), label_set=["Yes", "No", "Maybe"])
    assert forced["label_set"] == ["Yes", "No", "Maybe"] and forced["per_class"]["Maybe"]["support"] == 0
