"""LM scores on a tiny randomly initialised Llama (fast) and on the bundled SmolLM2 (slow)."""
from __future__ import annotations

import math

import numpy as np
import pyarrow as pa
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")
tokenizers = pytest.importorskip("tokenizers")

from thresher.errors import UsageError  # noqa: E402
from thresher.features import lm_scores  # noqa: E402
from thresher.features.lm_scores import (  # noqa: E402
    SCORE_COLUMNS,
    lm_score_batch,
    score_lm,
    score_lm_reference,
)

CORPUS = [
    "Write a short poem about the sea and the wind.",
    "The sea is grey, the wind is loud, the gulls cry over the harbour.",
    "Explain what a hash table is in one sentence.",
    "A hash table maps keys to values using a hash function to pick a bucket.",
    "Translate 'good morning' into French.",
    "Bonjour. In French, 'good morning' is usually just bonjour.",
    "List three prime numbers greater than ten: 11, 13 and 17.",
    "def add(a, b):\n    return a + b",
]
CHAT_TEMPLATE = (
    "{% for m in messages %}<|{{ m['role'] }}|>\n{{ m['content'] }}</s>\n{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
)


def build_tokenizer(chat: bool = True):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    specials = ["<pad>", "<s>", "</s>", "<|user|>", "<|assistant|>"]
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=400, special_tokens=specials, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(CORPUS * 3, trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", pad_token="<pad>")
    if chat:
        fast.chat_template = CHAT_TEMPLATE
    return fast


def build_model(vocab_size: int, seed: int = 0):
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(
        vocab_size=vocab_size, hidden_size=48, intermediate_size=96, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
        initializer_range=0.3,  # large enough that losses differ clearly between rows
        pad_token_id=0, bos_token_id=1, eos_token_id=2,
    )
    with torch.random.fork_rng():  # never leave global RNG state changed
        torch.manual_seed(seed)
        model = LlamaForCausalLM(config)
    return model.eval()


@pytest.fixture(scope="module")
def tiny_lm():
    tokenizer = build_tokenizer()
    return build_model(len(tokenizer)), tokenizer


def rows(n: int = 24, seed: int = 1):
    """Prompts and responses of mixed lengths (so batches need padding)."""
    rng = np.random.default_rng(seed)
    words = " ".join(CORPUS).split()
    prompts = [" ".join(rng.choice(words, size=rng.integers(1, 30))) for _ in range(n)]
    responses = [" ".join(rng.choice(words, size=rng.integers(1, 60))) for _ in range(n)]
    if n >= 6:  # repeated rows and responses, as real pools have
        prompts[n - 1], responses[n - 1] = prompts[0], responses[0]
        responses[n - 2] = responses[1]
    return prompts, responses


def assert_scores_close(a: dict, b: dict, tol: float = 1e-3) -> None:
    for k in SCORE_COLUMNS:
        if k == "lm_truncated":
            np.testing.assert_array_equal(a[k], b[k])
        elif k.startswith("ppl"):  # exp() of a loss: compare relatively
            np.testing.assert_allclose(a[k], b[k], rtol=tol, err_msg=k)
        else:
            np.testing.assert_allclose(a[k], b[k], rtol=0, atol=tol, err_msg=k)


def test_batched_equals_one_at_a_time_reference(tiny_lm):
    prompts, responses = rows()
    calls = []
    got = score_lm(prompts, responses, tiny_lm, dtype="float32", batch_tokens=512,
                   progress=lambda done, total: calls.append((done, total)))
    ref = score_lm_reference(prompts, responses, tiny_lm)
    assert_scores_close(got, ref)
    # The comparison means something: scores vary a lot across rows,
    # and several batches (each padded to its longest sequence) were run.
    assert np.std(got["loss_response_given_prompt"]) > 0.1
    assert np.std(got["ifd"]) > 0.01
    assert len(calls) > 2 and calls[-1][0] == calls[-1][1]


def test_buckets_cover_every_sequence_with_little_padding():
    lengths = np.clip(np.random.default_rng(0).lognormal(3.5, 1.0, 5000).astype(np.int64), 1, 1024)
    batches = list(lm_scores._buckets(lengths, 2048))
    seen = np.concatenate(batches)
    np.testing.assert_array_equal(np.sort(seen), np.arange(len(lengths)))
    for b in batches:
        padded, real = len(b) * lengths[b].max(), lengths[b].sum()
        assert padded <= 2048 or len(b) == 1
        assert padded <= 1.1 * real or real < lm_scores._MIN_BATCH
    total_padded = sum(len(b) * lengths[b].max() for b in batches)
    assert total_padded <= 1.1 * lengths.sum()


def test_full_logits_path_matches_fast_head(tiny_lm, monkeypatch):
    prompts, responses = rows(10, seed=2)
    fast = score_lm(prompts, responses, tiny_lm, dtype="float32", batch_tokens=1024)
    monkeypatch.setattr(lm_scores, "_PLAIN_HEAD_TYPES", frozenset())
    full = score_lm(prompts, responses, tiny_lm, dtype="float32", batch_tokens=1024)
    assert_scores_close(fast, full, tol=1e-4)


def test_repeated_rows_are_scored_once_with_the_same_result(tiny_lm, monkeypatch):
    prompts, responses = rows(10, seed=8)
    model, tokenizer = tiny_lm
    plan = lm_scores._Plan.build(tokenizer, prompts, responses, "auto", 1024)
    assert plan.active.sum() == 2 * 10 - 2 - 1  # last row entirely, row 8 alone
    got = score_lm(prompts, responses, tiny_lm, batch_tokens=512)
    for k in SCORE_COLUMNS:
        assert got[k][9] == got[k][0]
    assert got["loss_response_alone"][8] == got["loss_response_alone"][1]
    assert got["loss_response_given_prompt"][8] != got["loss_response_given_prompt"][1]
    monkeypatch.setattr(lm_scores, "_DEDUP", False)
    assert lm_scores._Plan.build(tokenizer, prompts, responses, "auto", 1024).active.sum() == 20
    assert_scores_close(got, score_lm(prompts, responses, tiny_lm, batch_tokens=512), tol=1e-4)


def test_derived_scores_and_determinism(tiny_lm):
    prompts, responses = rows(12, seed=3)
    a = score_lm(prompts, responses, tiny_lm, batch_tokens=1024)
    b = score_lm(prompts, responses, tiny_lm, batch_tokens=2048)
    np.testing.assert_allclose(a["ifd"], a["loss_response_given_prompt"] / a["loss_response_alone"], rtol=1e-12)
    np.testing.assert_allclose(a["ppl_response"], np.exp(a["loss_response_given_prompt"]), rtol=1e-12)
    assert np.all(a["ppl_prompt"] > 1)
    again = score_lm(prompts, responses, tiny_lm, batch_tokens=1024)
    for k in SCORE_COLUMNS:
        np.testing.assert_array_equal(a[k], again[k])  # same call, same bits
    assert_scores_close(a, b, tol=1e-4)  # other batching, same scores


def test_truncation_flag_and_sides(tiny_lm):
    model, tokenizer = tiny_lm
    prompts, responses = rows(16, seed=4)
    prompts[3], responses[3] = " ".join(CORPUS) * 2, " ".join(CORPUS)
    max_length = 64
    got = score_lm(prompts, responses, tiny_lm, max_length=max_length, batch_tokens=256)
    ref = score_lm_reference(prompts, responses, tiny_lm, max_length=max_length)
    assert_scores_close(got, ref)
    head, tail = lm_scores._template_ids(tokenizer, "auto")
    count = lambda text: len(tokenizer(text, add_special_tokens=False)["input_ids"])  # noqa: E731
    n_tokens = [count(p) + count(r) for p, r in zip(prompts, responses)]
    expected = np.array(n_tokens) + len(head) + len(tail) > max_length
    np.testing.assert_array_equal(got["lm_truncated"], expected)
    assert expected[3] and 0 < expected.sum() < len(expected)
    # The prompt loses its middle: text added in the middle changes nothing, at the start it does.
    mid = len(prompts[3]) // 2
    middle = prompts[3][:mid] + " xyz qqq " + prompts[3][mid:]
    same = score_lm([middle], [responses[3]], tiny_lm, max_length=max_length)
    assert same["loss_response_given_prompt"][0] == pytest.approx(got["loss_response_given_prompt"][3], abs=1e-5)
    start = score_lm(["xyz qqq " + prompts[3]], [responses[3]], tiny_lm, max_length=max_length)
    assert abs(start["loss_response_given_prompt"][0] - got["loss_response_given_prompt"][3]) > 1e-4


def test_untruncated_prompt_changes_conditioned_loss_only(tiny_lm):
    r = ["The sea is grey, the wind is loud."]
    a = score_lm(["Write a short poem about the sea."], r, tiny_lm)
    b = score_lm(["Explain what a hash table is."], r, tiny_lm)
    assert a["loss_response_alone"][0] == pytest.approx(b["loss_response_alone"][0], abs=1e-5)
    assert abs(a["loss_response_given_prompt"][0] - b["loss_response_given_prompt"][0]) > 1e-3


def test_empty_and_missing_texts(tiny_lm):
    got = score_lm(["", "Explain a hash table.", None], ["A short answer.", "", "Bonjour."], tiny_lm)
    assert math.isnan(got["ppl_prompt"][0]) and got["ifd"][0] == pytest.approx(1.0, abs=1e-5)
    assert math.isnan(got["loss_response_given_prompt"][1]) and math.isnan(got["ifd"][1])
    assert got["ppl_prompt"][1] > 1
    assert math.isnan(got["ppl_prompt"][2]) and np.isfinite(got["ifd"][2])
    empty = score_lm([], [], tiny_lm)
    assert all(len(v) == 0 for v in empty.values())


def test_plain_template_and_template_errors(tiny_lm):
    model, _ = tiny_lm
    plain_tok = build_tokenizer(chat=False)
    prompts, responses = rows(8, seed=5)
    for template in ("auto", "### Instruction:\n{prompt}\n### Response:\n"):
        got = score_lm(prompts, responses, (model, plain_tok), template=template, batch_tokens=512)
        assert_scores_close(got, score_lm_reference(prompts, responses, (model, plain_tok), template=template))
    with pytest.raises(UsageError, match="no chat template"):
        score_lm(prompts, responses, (model, plain_tok), template="chat")
    with pytest.raises(UsageError, match=r"\{prompt\}"):
        score_lm(prompts, responses, tiny_lm, template="Question: {question}")


def test_bfloat16_stays_close(tiny_lm):
    prompts, responses = rows(12, seed=6)
    f32 = score_lm(prompts, responses, tiny_lm, dtype="float32")
    bf16 = score_lm(prompts, responses, tiny_lm, dtype="bfloat16")
    np.testing.assert_allclose(bf16["loss_response_given_prompt"], f32["loss_response_given_prompt"], atol=0.1)


def test_arrow_batch_function(tiny_lm):
    prompts, responses = rows(6, seed=7)
    responses[2] = ""
    batch = pa.RecordBatch.from_pydict({"id": list(range(6)), "prompt": prompts, "response": responses})
    out = lm_score_batch(batch, tiny_lm, batch_tokens=1024)
    assert set(out) == set(SCORE_COLUMNS)
    assert out["ifd"].type == pa.float64() and out["lm_truncated"].type == pa.bool_()
    assert len(out["ifd"]) == 6 and out["ifd"].null_count == 1 and not out["ifd"][2].is_valid
    direct = score_lm(prompts, responses, tiny_lm, batch_tokens=1024)
    np.testing.assert_allclose(out["ppl_prompt"].to_numpy(), direct["ppl_prompt"])
    with pytest.raises(UsageError, match="'response'"):
        lm_score_batch(pa.RecordBatch.from_pydict({"prompt": prompts}), tiny_lm)


def test_argument_errors(tiny_lm):
    with pytest.raises(UsageError, match="pair up"):
        score_lm(["a", "b"], ["c"], tiny_lm)
    with pytest.raises(UsageError, match="dtype"):
        score_lm(["a"], ["b"], tiny_lm, dtype="float16")
    with pytest.raises(UsageError, match="batch_tokens"):
        score_lm(["a"], ["b"], tiny_lm, batch_tokens=0)
    with pytest.raises(UsageError, match="no room"):
        score_lm(["a"], ["b"], tiny_lm, max_length=8, template="A long preamble before {prompt} and after")
    with pytest.raises(UsageError, match="model must be"):
        score_lm(["a"], ["b"], 3.5)


# ------------------------------------------------------------------ bundled LM
SLOW_PROMPTS = [
    "What is the capital of France?",
    "Give me two tips for sleeping better.",
    "Write a haiku about autumn leaves.",
    "Explain recursion to a ten-year-old.",
    "Translate 'thank you very much' into Spanish.",
    "What is 12 times 11?",
    "Summarize the plot of Romeo and Juliet in two sentences.",
    "Name three programming languages.",
    "Why is the sky blue?",
    "Write a Python function that reverses a string.",
]
SLOW_RESPONSES = [
    "The capital of France is Paris.",
    "Keep a regular schedule, and avoid screens for an hour before bed.",
    "Red leaves drift and fall / the cold wind carries them off / branches wait for snow",
    "Recursion is when a function solves a problem by calling itself on a smaller piece of the same problem.",
    "Muchas gracias.",
    "12 times 11 is 132.",
    "Two young lovers from feuding families secretly marry. A chain of misunderstandings ends with both dead.",
    "Python, Rust and JavaScript.",
    "Sunlight is scattered by air molecules, and blue light is scattered more than red light.",
    "def reverse(s):\n    return s[::-1]",
]


@pytest.mark.slow
def test_bundled_smollm2_batched_matches_reference(request):
    from thresher.models import default_lm_path, load_causal_lm

    # pytest's own cache dir: the GGUF is converted once per checkout, not once per run.
    cache = request.config.cache.mkdir("thresher-models")
    path = default_lm_path(cache)
    assert default_lm_path(cache) == path  # second call reuses the safetensors cache
    model, tokenizer = load_causal_lm(str(path))
    prompts = SLOW_PROMPTS + SLOW_RESPONSES  # 20 rows; the swap gives mismatched pairs too
    responses = SLOW_RESPONSES + SLOW_PROMPTS
    got = score_lm(prompts, responses, (model, tokenizer), dtype="float32", batch_tokens=1024)
    ref = score_lm_reference(prompts, responses, (model, tokenizer), dtype="float32")
    assert_scores_close(got, ref)
    # A matching prompt makes the answer easier than a mismatched one: IFD lower on average.
    assert got["ifd"][:10].mean() < got["ifd"][10:].mean()
    # The conditioned sequence is the chat template's own rendering of the pair.
    head, tail = lm_scores._template_ids(tokenizer, "auto")
    ids = head + tokenizer(prompts[0], add_special_tokens=False)["input_ids"] + tail \
        + tokenizer(responses[0], add_special_tokens=False)["input_ids"]
    rendered = tokenizer.apply_chat_template(
        [{"role": "user", "content": prompts[0]}, {"role": "assistant", "content": responses[0]}], tokenize=False
    )
    assert rendered.startswith(tokenizer.decode(ids))
