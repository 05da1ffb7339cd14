"""A tiny randomly initialized Llama and a BPE tokenizer trained on toy texts (no hub)."""
from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")
pytest.importorskip("peft")
pytest.importorskip("tokenizers")

from thresher.train.examples import Examples  # noqa: E402

THINGS = ["brick", "feather", "stone", "leaf", "anvil", "coin", "apple", "car", "cloud", "boat"]
WEIGHT = {t: i for i, t in enumerate(["feather", "leaf", "cloud", "coin", "apple", "stone", "brick", "anvil",
                                        "boat", "car"])}
FREE_TEXT = [
    "Write a short poem about the sea and the wind.",
    "The sea is grey, the wind is loud, the gulls cry over the harbour.",
    "Explain what a hash table is in one sentence.",
    "A hash table maps keys to values using a hash function to pick a bucket.",
    "Translate good morning into French.",
    "Bonjour. In French, good morning is usually just bonjour.",
    "List three prime numbers greater than ten: 11, 13 and 17.",
]
CHAT_TEMPLATE = (
    "{% for m in messages %}<|{{ m['role'] }}|>\n{{ m['content'] }}</s>\n{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
)


def heavier_rows(n: int, seed: int = 0) -> tuple[list[str], list[str]]:
    """'Is a X heavier than a Y?' -> 'Yes' / 'No' (a learnable rule)."""
    rng = np.random.default_rng(seed)
    pairs = [rng.choice(len(THINGS), size=2, replace=False) for _ in range(n)]
    prompts = [f"Is a {THINGS[a]} heavier than a {THINGS[b]}?" for a, b in pairs]
    answers = ["Yes" if WEIGHT[THINGS[a]] > WEIGHT[THINGS[b]] else "No" for a, b in pairs]
    return prompts, answers


def build_tokenizer(chat: bool = True):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    specials = ["<pad>", "<s>", "</s>", "<|user|>", "<|assistant|>"]
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=360, special_tokens=specials, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    prompts, answers = heavier_rows(200)
    tok.train_from_iterator(FREE_TEXT * 3 + prompts + answers + ["### Instruction:\n### Response:\n"] * 3, trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", pad_token="<pad>")
    if chat:
        fast.chat_template = CHAT_TEMPLATE
    return fast


def build_model(vocab_size: int, seed: int = 0):
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(vocab_size=vocab_size, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
                         pad_token_id=0, bos_token_id=1, eos_token_id=2, tie_word_embeddings=False,
                         initializer_range=0.3)  # 0.02 caps logits near 0.6 after the final norm: nothing learnable
    with torch.random.fork_rng(devices=[]):  # never leave global RNG state changed
        torch.manual_seed(seed)
        model = LlamaForCausalLM(config)
    return model.eval()


@pytest.fixture(scope="session")
def tiny_lm():
    """(model, tokenizer): a 2-layer, hidden-32 Llama with a chat template. fine_tune copies it."""
    tokenizer = build_tokenizer()
    return build_model(len(tokenizer)), tokenizer


@pytest.fixture(scope="session")
def tiny_plain_lm(tiny_lm):
    """The same model with a tokenizer that has no chat template."""
    return tiny_lm[0], build_tokenizer(chat=False)


@pytest.fixture(autouse=True)
def _one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture()
def heavier():
    """64 train and 32 eval rows of the heavier-than task."""
    p, a = heavier_rows(96, seed=3)
    return Examples(p[:64], a[:64], labels=a[:64]), Examples(p[64:], a[64:], labels=a[64:])
