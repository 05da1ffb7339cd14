"""Examples from datasets, and the token encoding: templates, masking, truncation."""
from __future__ import annotations

import numpy as np
import pytest

from thresher.data.dataset import Dataset
from thresher.errors import UsageError
from thresher.train.examples import IGNORE_INDEX, Examples, encode, pad_batch, template_parts


def alpaca_records():
    return [
        {"instruction": "Is a brick heavier than a leaf?", "input": "", "output": "Yes", "category": "heavy",
         "_weight": 2.0},
        {"instruction": "Translate good morning", "input": "into French.", "output": "Bonjour.",
         "category": "translate", "_weight": 0.5},
        {"instruction": "Is a coin heavier than a car?", "input": "", "output": "No", "category": "heavy",
         "_weight": 1.0},
    ]


def test_from_dataset_reads_prompts_weights_labels_and_ids():
    ds = Dataset.from_records(alpaca_records())
    ex = Examples.from_dataset(ds, label_field="category")
    assert ex.prompts[1] == "Translate good morning\n\ninto French."
    assert ex.responses == ["Yes", "Bonjour.", "No"]
    np.testing.assert_array_equal(ex.weights, [2.0, 0.5, 1.0])
    assert ex.labels == ["heavy", "translate", "heavy"]
    assert len(ex.ids) == 3 and len(set(ex.ids)) == 3
    assert Examples.from_dataset(ds, weight_field=None).weights is None
    sub = ex.take([2, 0])
    assert sub.responses == ["No", "Yes"] and sub.labels == ["heavy", "heavy"] and list(sub.weights) == [1.0, 2.0]
    assert len(sub) == 2


def test_from_dataset_errors_name_the_field():
    ds = Dataset.from_records(alpaca_records())
    with pytest.raises(UsageError, match="label field 'task'"):
        Examples.from_dataset(ds, label_field="task")
    with pytest.raises(UsageError, match="weight field 'w'"):
        Examples.from_dataset(ds, weight_field="w")
    with pytest.raises(UsageError, match="weight field 'category'.*expected numbers"):
        Examples.from_dataset(ds, weight_field="category")


def test_examples_validation():
    with pytest.raises(UsageError, match="pair up"):
        Examples(["a", "b"], ["c"])
    with pytest.raises(UsageError, match="finite and >= 0"):
        Examples(["a"], ["b"], weights=[-1.0])
    with pytest.raises(UsageError, match="labels"):
        Examples(["a"], ["b"], labels=["x", "y"])
    assert Examples([None], [None]).prompts == [""]


@pytest.mark.parametrize("template", [None, "Q: {prompt}\nA: ", "Q: {prompt}\nA: {response} <END>"])
def test_labels_mask_exactly_the_prompt_side(tiny_lm, template):
    _, tok = tiny_lm
    ex = Examples(["Is a brick heavier than a leaf?", "Explain what a hash table is."],
                  ["Yes", "A hash table maps keys to values."])
    enc = encode(tok, ex, template=template)
    parts = template_parts(tok, template)
    for i in range(len(ex)):
        p = tok(ex.prompts[i], add_special_tokens=False)["input_ids"]
        r = tok(ex.responses[i], add_special_tokens=False)["input_ids"]
        expect = parts.head + p + parts.mid + r + parts.end
        np.testing.assert_array_equal(enc.input_ids[i], expect)
        cut = len(parts.head) + len(p) + len(parts.mid)
        assert enc.prompt_lengths[i] == cut
        assert np.all(enc.labels[i][:cut] == IGNORE_INDEX)
        np.testing.assert_array_equal(enc.labels[i][cut:], expect[cut:])
    assert enc.lengths.tolist() == [x.size for x in enc.input_ids]


def test_chat_template_renders_the_conversation_and_plain_ends_with_eos(tiny_lm, tiny_plain_lm):
    _, tok = tiny_lm
    ex = Examples(["Is a brick heavier than a leaf?"], ["Yes"])
    text = tok.decode(encode(tok, ex).input_ids[0])
    assert text == tok.apply_chat_template(
        [{"role": "user", "content": ex.prompts[0]}, {"role": "assistant", "content": "Yes"}], tokenize=False)
    _, plain = tiny_plain_lm
    ids = encode(plain, ex).input_ids[0]
    assert ids[0] == plain.bos_token_id and ids[-1] == plain.eos_token_id
    assert "### Instruction:" in plain.decode(ids) and "### Response:" in plain.decode(ids)


def test_truncation_cuts_the_prompt_middle_and_keeps_the_response_start(tiny_lm):
    from thresher.features.truncation import MARKER

    _, tok = tiny_lm
    prompt = "Is it heavy? " + " ".join(["brick stone leaf"] * 30) + " Answer Yes or No."
    response = "Yes " + " ".join(["feather"] * 120)
    enc = encode(tok, Examples([prompt], [response]), max_length=96)
    parts = template_parts(tok, None)
    ids = enc.input_ids[0]
    assert enc.truncated[0] and ids.size <= 96 and enc.removed[0] > 0
    text = tok.decode(ids[len(parts.head):enc.prompt_lengths[0] - len(parts.mid)])
    assert text.startswith("Is it heavy?") and text.endswith("Answer Yes or No.") and MARKER.strip() in text
    r = tok(response, add_special_tokens=False)["input_ids"]
    kept_r = ids[enc.prompt_lengths[0]:]
    np.testing.assert_array_equal(kept_r, r[:kept_r.size])  # a cut response has no end-of-turn
    assert enc.truncation()["rows"] == 1


def test_truncation_keeps_the_instruction_and_the_end_of_turn(tiny_lm):
    _, tok = tiny_lm
    instruction = "Answer Yes or No: is the first thing heavier?"
    article = " ".join(f"brick{i} stone leaf" for i in range(60))
    ds = Dataset.from_records([{"instruction": instruction, "input": article, "output": "Yes"}])
    ex = Examples.from_dataset(ds)
    assert ex.spans[0].tolist() == [len(instruction) + 2, len(instruction) + 2 + len(article)]
    enc = encode(tok, ex, max_length=64)
    parts = template_parts(tok, None)
    ids = enc.input_ids[0]
    assert enc.truncated[0] and ids.size <= 64
    prompt = tok.decode(ids[len(parts.head):enc.prompt_lengths[0] - len(parts.mid)])
    assert prompt.startswith(instruction) and "brick0" in prompt and "brick59" in prompt and "brick30 " not in prompt
    assert ids[-len(parts.end):].tolist() == parts.end  # the whole response fits: its end-of-turn is learned


def test_template_errors(tiny_lm):
    _, tok = tiny_lm
    ex = Examples(["a"], ["b"])
    for bad in ("no placeholder", "{prompt} {prompt}", "{response} then {prompt}"):
        with pytest.raises(UsageError, match="template"):
            encode(tok, ex, template=bad)
    with pytest.raises(UsageError, match="max_length"):
        encode(tok, ex, max_length=3)


def test_pad_batch_pads_right_and_masks(tiny_lm):
    _, tok = tiny_lm
    enc = encode(tok, Examples(["a", "a much longer prompt here"], ["b", "c"]))
    ids, mask, labels = pad_batch(enc, np.array([0, 1]), pad_id=0)
    assert ids.shape == (2, enc.lengths.max()) and mask.sum() == enc.lengths.sum()
    assert np.all(labels[mask == 0] == IGNORE_INDEX) and np.all(ids[mask == 0] == 0)
