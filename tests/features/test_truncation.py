"""The prompt-fitting rule shared by training, evaluation and LM scores."""
from __future__ import annotations

import numpy as np
import pytest

from thresher.data.dataset import Dataset
from thresher.features.truncation import MARKER, WHOLE, fit_prompts, input_spans, truncation_summary


class CharTokenizer:
    """One token per character: lengths are easy to reason about."""

    def __call__(self, texts, add_special_tokens=False):
        texts = [texts] if isinstance(texts, str) else texts
        return {"input_ids": [[ord(c) for c in t] for t in texts]}


def decode(ids) -> str:
    return "".join(chr(i) for i in ids)


def fit(prompt: str, budget: int, span=None) -> str:
    tok = CharTokenizer()
    ids = [np.asarray(tok(prompt)["input_ids"][0], np.int64)]
    spans = None if span is None else np.asarray([span], np.int64)
    out, removed = fit_prompts(tok, [prompt], ids, np.array([budget]), spans)
    assert removed[0] == len(prompt) - out[0].size
    return decode(out[0])


def test_rows_that_fit_are_untouched():
    assert fit("short prompt", 50) == "short prompt"


def test_the_middle_of_the_input_goes_and_the_instruction_stays():
    instruction, article, question = "CLASSIFY:\n\n", "a" * 40 + "b" * 40 + "c" * 40, "\n\nANSWER?"
    prompt = instruction + article + question
    got = fit(prompt, 60, span=(len(instruction), len(instruction) + len(article)))
    assert len(got) == 60
    assert got.startswith(instruction) and got.endswith(question) and MARKER in got
    body = got[len(instruction):-len(question)]
    head, tail = body.split(MARKER)
    assert set(head) == {"a"} and set(tail) == {"c"} and abs(len(head) - len(tail)) <= 1


def test_without_a_span_the_whole_prompt_keeps_its_start_and_end():
    got = fit("START" + "x" * 200 + "END", 40)
    assert len(got) == 40 and got.startswith("START") and got.endswith("END") and MARKER in got


def test_parts_around_the_input_longer_than_the_budget_cut_the_whole_prompt():
    prompt = "I" * 50 + "input" + "Q" * 50
    got = fit(prompt, 30, span=(50, 55))
    assert len(got) == 30 and got.startswith("I") and got.endswith("Q")


def test_a_tiny_budget_still_fits_without_the_marker():
    assert len(fit("z" * 100, 3)) == 3


def test_input_spans_for_alpaca_and_chat_rows():
    alpaca = Dataset.from_records([{"instruction": "Do it", "input": "the text", "output": "ok"},
                                   {"instruction": "No input here", "input": "", "output": "ok"}])
    spans = input_spans(alpaca, ["Do it\n\nthe text", "No input here"])
    assert spans.tolist() == [[7, 15], [WHOLE, WHOLE]]
    chat = Dataset.from_records([{"messages": [
        {"role": "system", "content": "S" * 30},
        {"role": "user", "content": "short"},
        {"role": "assistant", "content": "reply"},
        {"role": "user", "content": "a much longer question"},
        {"role": "assistant", "content": "final"}]}])
    prompt = "\n\n".join(["S" * 30, "short", "reply", "a much longer question"])
    (start, end), = input_spans(chat, [prompt]).tolist()
    assert prompt[start:end] == "a much longer question"


def test_truncation_summary():
    s = truncation_summary(np.array([0, 5, 0, 15]), np.array([10, 20, 10, 30]))
    assert s["rows"] == 2 and s["share"] == 0.5 and s["mean_removed"] == 10 and s["max_removed"] == 15
    assert s["mean_removed_share"] == pytest.approx((5 / 20 + 15 / 30) / 2)
