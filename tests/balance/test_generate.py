"""Targeted generation: prompts, parsing, the seeded loop with a fake LM, output records, a tiny real Llama."""
from __future__ import annotations

import json
import re

import numpy as np
import pytest

from thresher.balance.generate import (LMGenerator, category_counts, few_shot_prompt, generate_for_thin,
                                       parse_candidate, plan_targets, stop_strings, synthetic_records,
                                       write_generated)
from thresher.balance.validate import REASONS
from thresher.data.dataset import Dataset
from thresher.errors import UsageError

POOL = {
    "greetings": [("Hello there!", "Hi! How are you doing today?"), ("Good morning.", "Good morning to you too."),
                  ("Hi, how is it going?", "It is going great, thanks for asking."),
                  ("Good evening!", "Good evening! How was your day?")],
    "math": [("What is 12 plus 7?", "12 plus 7 equals 19."), ("Compute 45 minus 18.", "45 minus 18 equals 27."),
             ("What is 6 times 8?", "6 times 8 equals 48.")],
    "weather": [(f"What is the weather like in city number {i}?", f"It is sunny and {20 + i} degrees there today.")
                for i in range(8)],
}
# what the fake LM writes: new on-category pairs, a copy of a pool row, an off-category pair, garbage
NEW = {
    "greetings": [("Good afternoon, friend!", "Good afternoon! Lovely to see you."),
                  ("Hey there, long time no see!", "Hey! It has been ages, how have you been?"),
                  ("Hi! Nice to meet you.", "Nice to meet you too!"),
                  ("Morning! How are you?", "Morning! I am well, thank you."),
                  ("Hello again, my friend.", "Hello! Good to see you again.")],
    "math": [("What is 9 times 7?", "9 times 7 equals 63."), ("Compute 100 minus 37.", "100 minus 37 equals 63."),
             ("What is 15 plus 26?", "15 plus 26 equals 41."), ("What is 8 times 12?", "8 times 12 equals 96.")],
}
BAD = {"greetings": [("What is 14 plus 23?", "14 plus 23 equals 37.")], "math": [("Hello there!", "Hi!")]}


def pool_records(fmt: str = "alpaca") -> list[dict]:
    out = []
    for i, (cat, pairs) in enumerate((c, p) for c, ps in POOL.items() for p in ps):
        p, r = pairs
        if fmt == "alpaca":
            rec = {"instruction": p, "input": "", "output": r}
        elif fmt == "prompt_completion":
            rec = {"prompt": p, "completion": r}
        elif fmt == "messages":
            rec = {"messages": [{"role": "user", "content": p}, {"role": "assistant", "content": r}]}
        else:
            rec = {"text": f"{p} {r}"}
        out.append({"id": f"row-{i}", **rec, "category": cat})
    return out


def pool_jsonl(tmp_path, fmt: str = "alpaca"):
    path = tmp_path / f"pool_{fmt}.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in pool_records(fmt)))
    return path


class FakeLM:
    """Continuations drawn (seeded) from NEW, a pool copy, BAD and an unparseable text."""

    name = "fake-lm"
    batch_size = 4

    def __init__(self, garbage_only: bool = False):
        self.garbage_only = garbage_only
        self.calls: list[tuple[list[str], int, list[str]]] = []

    def __call__(self, prompts, seed, stop):
        self.calls.append((list(prompts), seed, list(stop)))
        rng = np.random.default_rng(seed)
        out = []
        for prompt in prompts:
            category = re.search(r'Examples of "(.+?)"', prompt).group(1)
            choices = [] if self.garbage_only else NEW[category] + POOL[category][:1] + BAD[category]
            k = rng.integers(len(choices) + 1)
            if k == len(choices):
                out.append(" I am sorry, I cannot help with that")
            else:
                p, r = choices[k]
                out.append(f" {p}\nResponse: {r}\n\nInstruction:")
        return out


@pytest.fixture(scope="module")
def pool() -> Dataset:
    return Dataset.from_records(pool_records())


def shot_blocks(prompt: str) -> list[tuple[str, str]]:
    return re.findall(r"Instruction: (.*)\nResponse: (.*)", prompt)


# -- prompts and parsing -------------------------------------------------------------------
def test_few_shot_prompt_shape():
    text = few_shot_prompt("health", [("I have a fever", "Did you take medicine?"), ("Why?", "I feel ill")])
    assert text.startswith('Examples of "health" requests and answers.')
    assert text.endswith("\n\nInstruction:")
    assert shot_blocks(text) == [("I have a fever", "Did you take medicine?"), ("Why?", "I feel ill")]


@pytest.mark.parametrize("text, expected", [
    (" Are you ill?\nResponse: A little.\n\nInstruction: next one", ("Are you ill?", "A little.")),
    (" Are you ill?\nResponse: A little.\n\nThis example shows a health question.", ("Are you ill?", "A little.")),
    (" Are you ill?\nResponse: A little.\nInstruction: more", ("Are you ill?", "A little.")),
    ("Instruction: Are you ill?\n**Response:** A little.", ("Are you ill?", "A little.")),
    (" Are you ill?\nanswer:   A little.  ", ("Are you ill?", "A little.")),
    (" Two\nlines?\nResponse: Yes", ("Two\nlines?", "Yes")),
])
def test_parse_well_shaped(text, expected):
    assert parse_candidate(text) == expected


@pytest.mark.parametrize("text", [
    "", " I am sorry, I cannot help with that", " Are you ill?", " Are you ill?\nResponse:   \n\nmore",
    "\nResponse: only an answer", " Are you ill? Response: on one line",
])
def test_parse_badly_shaped(text):
    assert parse_candidate(text) is None


def test_multiline_responses_end_at_the_next_instruction_only():
    text = " Write a poem\nResponse: Line one.\n\nLine two.\n\nInstruction: another"
    assert parse_candidate(text) == ("Write a poem", "Line one.")
    assert parse_candidate(text, multiline=True) == ("Write a poem", "Line one.\n\nLine two.")
    assert stop_strings([("a", "b\n\nc")]) == ["\nInstruction:"]
    assert stop_strings([("a", "b")]) == ["\n\n"]


# -- planning -------------------------------------------------------------------------------
def test_only_thin_categories_are_planned(pool):
    counts = category_counts(pool, "category")
    assert counts == {"greetings": 4, "math": 3, "weather": 8}
    assert plan_targets(counts, below=5) == {"greetings": 1, "math": 2}
    assert plan_targets(counts, below=5, per_category=3) == {"greetings": 3, "math": 3}
    assert plan_targets(counts, below=5, to=10) == {"greetings": 6, "math": 7}
    assert plan_targets(counts, below=3) == {}
    with pytest.raises(UsageError, match="not both"):
        plan_targets(counts, below=5, per_category=1, to=6)
    with pytest.raises(UsageError, match="for_below"):
        plan_targets(counts, below=0)


# -- the loop with a fake LM ------------------------------------------------------------------
def test_prompts_hold_k_real_examples_of_their_category_only(pool):
    fake = FakeLM()
    generate_for_thin(pool, "category", fake, below=5, per_category=3, shots=2, seed=1)
    seen = set()
    for prompts, _, stop in fake.calls:
        assert stop == ["\n\n"]
        for prompt in prompts:
            category = re.search(r'Examples of "(.+?)"', prompt).group(1)
            seen.add(category)
            blocks = shot_blocks(prompt)
            assert len(blocks) == len(set(blocks)) == 2
            assert set(blocks) <= set(POOL[category])
    assert seen == {"greetings", "math"}  # weather has 8 >= 5 rows: never prompted


def test_shots_capped_by_the_category_size(pool):
    fake = FakeLM()
    generate_for_thin(pool, "category", fake, below=4, per_category=1, shots=10, seed=0)
    assert all(len(shot_blocks(p)) == 3 for prompts, _, _ in fake.calls for p in prompts)


def test_seeded_determinism(pool):
    a, b, c = FakeLM(), FakeLM(), FakeLM()
    ra = generate_for_thin(pool, "category", a, below=5, per_category=3, seed=7)
    rb = generate_for_thin(pool, "category", b, below=5, per_category=3, seed=7)
    rc = generate_for_thin(pool, "category", c, below=5, per_category=3, seed=8)
    assert a.calls == b.calls and ra.rows == rb.rows and ra.summary() == rb.summary()
    assert a.calls != c.calls


def test_counts_are_consistent_and_rows_are_valid(pool):
    fake = FakeLM()
    result = generate_for_thin(pool, "category", fake, below=5, per_category=3, seed=3)
    summary = result.summary()
    for cat in summary["categories"]:
        assert cat["attempts"] == cat["accepted"] + sum(cat["rejected"].values())
        assert cat["acceptance_rate"] == pytest.approx(cat["accepted"] / cat["attempts"], abs=1e-4)
        assert cat["kept"] == min(cat["accepted"], cat["target"])
        assert cat["attempts"] <= 4 * cat["target"]
        assert set(cat["rejected"]) == set(REASONS)
    assert summary["attempts"] == sum(len(p) for p, _, _ in fake.calls)
    kept = {(r["prompt"], r["response"], r["category"]) for r in result.rows}
    assert len(kept) == len(result.rows) == summary["kept"]
    assert all((p, r) in NEW[c] for p, r, c in kept)  # never a pool copy, an off-category pair or garbage
    rejected = summary["rejected"]
    assert rejected["unparseable"] > 0 and rejected["exact_duplicate"] > 0
    assert result.examples["unparseable"][0]["raw"].startswith(" I am sorry")


def test_target_not_reached_is_reported(pool):
    result = generate_for_thin(pool, "category", FakeLM(garbage_only=True), below=5, per_category=2,
                               max_attempts=5, seed=0)
    summary = result.summary()
    assert summary["kept"] == 0 and result.rows == []
    assert sorted(summary["not_reached"]) == ["greetings", "math"]
    assert [c["attempts"] for c in summary["categories"]] == [5, 5]
    assert summary["rejected"]["unparseable"] == 10
    assert summary["acceptance_rate"] == 0.0


def test_unknown_field_is_a_usage_error(pool):
    with pytest.raises(UsageError, match="no field 'topic'"):
        generate_for_thin(pool, "topic", FakeLM(), below=5)


# -- output -------------------------------------------------------------------------------------
@pytest.mark.parametrize("fmt", ["alpaca", "prompt_completion", "messages"])
def test_written_in_the_input_format_with_synthetic_marks(tmp_path, fmt):
    from thresher.api import read

    pool = read(pool_jsonl(tmp_path, fmt))
    result = generate_for_thin(pool, "category", FakeLM(), below=5, per_category=2, seed=0)
    out = tmp_path / "out.jsonl"
    manifest = write_generated(pool, result, out, seed=0)
    back = read(out)
    assert back.source.record_format == fmt
    assert len(back) == len(pool) + len(result.rows) == manifest["output"]["rows"]
    records = [json.loads(line) for line in out.read_text().splitlines()]
    original = pool_jsonl(tmp_path, fmt).read_text().splitlines()
    assert out.read_text().splitlines()[: len(pool)] == original  # pool rows byte for byte
    new = records[len(pool):]
    assert all(r["_synthetic"] is True and r["_generator"] == "fake-lm" and r["category"] == r["_category"]
               for r in new)
    assert not any("_synthetic" in r for r in records[: len(pool)])
    assert [r["_category"] for r in new] == [r["category"] for r in result.rows]
    assert manifest["synthetic_ids"] == [r["id"] for r in new]
    assert json.loads((tmp_path / "out.manifest.json").read_text())["kept"] == len(new)
    # same seed, same bytes
    again = tmp_path / "again.jsonl"
    write_generated(pool, generate_for_thin(pool, "category", FakeLM(), below=5, per_category=2, seed=0), again,
                    seed=0)
    assert again.read_bytes() == out.read_bytes()


def test_only_new_and_parquet(tmp_path):
    from thresher.api import read

    pool = read(pool_jsonl(tmp_path))
    result = generate_for_thin(pool, "category", FakeLM(), below=5, per_category=2, seed=0)
    write_generated(pool, result, tmp_path / "new.jsonl", only_new=True)
    assert len(read(tmp_path / "new.jsonl")) == len(result.rows)
    write_generated(pool, result, tmp_path / "all.parquet")
    table = read(tmp_path / "all.parquet").table
    assert table.num_rows == len(pool) + len(result.rows)
    assert table.column("_synthetic").to_pylist() == [None] * len(pool) + [True] * len(result.rows)


def test_refuses_formats_without_prompt_response_pairs(tmp_path):
    from thresher.api import read

    pool = read(pool_jsonl(tmp_path, "text"))
    with pytest.raises(UsageError, match="'text'"):
        synthetic_records(pool, "category", [{"prompt": "a", "response": "b", "category": "math"}], "x")


def test_integer_categories_are_written_back_as_integers(tmp_path):
    pool = Dataset.from_records([{**r, "category": ["greetings", "math", "weather"].index(r["category"])}
                                 for r in pool_records()])
    recs = synthetic_records(pool, "category", [{"prompt": "a", "response": "b", "category": "1"}], "x")
    assert recs[0]["category"] == 1 and recs[0]["_category"] == "1"


# -- a tiny random Llama through LMGenerator ------------------------------------------------------
@pytest.fixture(scope="module")
def tiny_lm():
    torch = pytest.importorskip("torch")
    pytest.importorskip("transformers")
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    corpus = [few_shot_prompt(c, p) for c, p in POOL.items()] * 3
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(corpus, trainers.BpeTrainer(vocab_size=300, special_tokens=["<pad>", "<s>", "</s>"],
                                                        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                                        show_progress=False))
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", pad_token="<pad>")
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
                         pad_token_id=0, bos_token_id=1, eos_token_id=2)
    with torch.random.fork_rng():
        torch.manual_seed(0)
        model = LlamaForCausalLM(config).eval()
    torch.set_num_threads(1)
    return model, tokenizer


def test_lm_generator_is_seeded_batched_and_leaves_torch_rng_alone(tiny_lm):
    import torch

    model, tokenizer = tiny_lm
    prompts = [few_shot_prompt("math", POOL["math"][:k]) for k in (1, 3, 2)]  # different lengths: padding
    sample = LMGenerator(model, tokenizer, max_new_tokens=12, temperature=1.0, batch_size=2, name="tiny")
    state = torch.random.get_rng_state()
    a, b, c = sample(prompts, seed=5), sample(prompts, seed=5), sample(prompts, seed=6)
    assert torch.equal(state, torch.random.get_rng_state())
    assert a == b and a != c and len(a) == 3
    greedy = LMGenerator(model, tokenizer, max_new_tokens=12, temperature=0, batch_size=3)
    one_by_one = [greedy([p], seed=0)[0] for p in prompts]
    assert greedy(prompts, seed=0) == one_by_one  # left padding does not change what is generated
    assert tokenizer.padding_side == "right"  # restored


def test_generate_for_thin_runs_on_the_tiny_lm(tiny_lm):
    model, tokenizer = tiny_lm
    pool = Dataset.from_records(pool_records())
    gen = LMGenerator(model, tokenizer, max_new_tokens=8, temperature=1.0, batch_size=4, name="tiny")
    result = generate_for_thin(pool, "category", gen, below=4, per_category=1, max_attempts=4, seed=0)
    (cat,) = result.summary()["categories"]
    assert cat["category"] == "math" and 1 <= cat["attempts"] <= 4 and cat["kept"] <= 1
    assert cat["attempts"] == cat["accepted"] + sum(cat["rejected"].values())


@pytest.mark.slow
def test_smollm2_end_to_end_on_a_thin_demo_category(tmp_path):
    """The bundled SmolLM2 generating for `health` (8 rows): the numbers add up (the rate may be low)."""
    from pathlib import Path

    from thresher.api import read
    from thresher.models import torch_threads

    demo = Path(__file__).resolve().parents[2] / "examples" / "demo" / "pool.jsonl"
    pool = read(demo)
    with torch_threads(1):
        gen = LMGenerator.load(None, max_new_tokens=48, batch_size=8)
        result = generate_for_thin(pool, "category", gen, below=9, per_category=2, max_attempts=8, seed=0)
    summary = result.summary()
    assert {c["category"] for c in summary["categories"]} == {"health", "history"}
    for c in summary["categories"]:
        assert 1 <= c["attempts"] <= 8
        assert c["attempts"] == c["accepted"] + sum(c["rejected"].values())
        assert c["kept"] == min(c["accepted"], 2)
    assert summary["kept"] == len(result.rows)
    manifest = write_generated(pool, result, tmp_path / "gen.jsonl", seed=0)
    assert manifest["output"]["synthetic_rows"] == len(result.rows)
    print(json.dumps(summary, indent=1))
