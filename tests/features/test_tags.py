"""Instruction-type tags on example prompts."""
from __future__ import annotations

import pyarrow as pa
import pytest

from thresher.errors import UsageError
from thresher.features.tags import RULES, TAGS, InstructionTags, tag_prompts

EXAMPLES = [
    ("Translate 'good morning' into French.", "translate"),
    ("How do I say thank you in Japanese? Please translate it.", "translate"),
    ("Write a Python function that reverses a string.", "code"),
    ("Fix this SQL query: SELECT * FORM users", "code"),
    ("```\nx = 1\n```\nWhy does this fail?", "code"),
    ("What is 12 * 7?", "math"),
    ("Solve the equation x^2 - 4 = 0.", "math"),
    ("Summarize the following article in two sentences.", "summarize"),
    ("Give me a TL;DR of this thread.", "summarize"),
    ("Rewrite this sentence to make it more formal.", "rewrite"),
    ("Paraphrase: The meeting was postponed.", "rewrite"),
    ("Classify the sentiment of this review as positive or negative.", "classification"),
    ("Identify the odd one out: apple, banana, carrot", "classification"),
    ("Extract all the names from the text below.", "extract"),
    ("List all the dates mentioned in this email.", "extract"),
    ("Brainstorm 5 ideas for a birthday party.", "brainstorm"),
    ("What are some good books about history", "brainstorm"),
    ("Write a poem about autumn.", "generate"),
    ("Compose an email to my landlord about the heating.", "generate"),
    ("Hello! How are you today?", "chat"),
    ("thanks a lot", "chat"),
    ("Who was the first president of the United States?", "question"),
    ("Explain photosynthesis", "question"),
    ("How many continents are there?", "question"),
    ("What is the function of the liver?", "question"),
    ("The quick brown fox.", "other"),
    ("", "other"),
]


@pytest.mark.parametrize("prompt, tag", EXAMPLES)
def test_examples(prompt, tag):
    assert tag_prompts(pa.array([prompt]))[0].as_py() == tag


def test_batch_keeps_row_order_and_every_tag_is_known():
    prompts = [p for p, _ in EXAMPLES]
    out = InstructionTags()(pa.table({"prompt": prompts})).column("instruction_type").to_pylist()
    assert out == [t for _, t in EXAMPLES]
    assert set(out) == set(TAGS)  # the examples cover every tag


def test_rule_order_decides_between_matching_rules():
    # "write" (generate) and "summary" (summarize) both match; summarize comes first
    assert tag_prompts(pa.array(["Write a summary of this report"]))[0].as_py() == "summarize"
    assert [t for t, _ in RULES].index("summarize") < [t for t, _ in RULES].index("generate")


def test_only_the_head_of_the_prompt_is_read():
    prompt = "Tell me what you think about this. " + "filler " * 100 + "Translate it into German."
    assert tag_prompts(pa.array([prompt]), head_chars=40)[0].as_py() == "question"
    assert tag_prompts(pa.array([prompt]), head_chars=5000)[0].as_py() == "translate"


def test_nulls_and_validation():
    assert InstructionTags()(pa.table({"prompt": pa.array([None, "hi"], pa.string())})).column(0).to_pylist() \
        == ["other", "chat"]
    with pytest.raises(UsageError):
        InstructionTags(head_chars=0)
