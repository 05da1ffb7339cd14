"""Quality heuristics on hand-made rows, and the vectorized signals against
plain-Python references."""
from __future__ import annotations

import re
from collections import Counter

import numpy as np
import pyarrow as pa
import pytest

from thresher.errors import UsageError
from thresher.features.quality import (
    QualitySignals,
    detect_language,
    ngram_keys,
    repeated_line_share,
    repeated_share,
    shared_share,
    split_words,
    truncated,
)


def run(prompts, responses, **params):
    table = pa.table({"prompt": pa.array(prompts, pa.string()), "response": pa.array(responses, pa.string())})
    return QualitySignals(**params)(table).to_pylist()


def test_known_values():
    out = run(["Repeat after me: the cat sat on the mat", "Q", "x"],
              ["the cat sat on the mat. the cat sat on the mat", "HELLO!!! 123\nHELLO!!! 123\nbye", "   "])
    first, second, third = out
    # 10 trigrams, 4 distinct ones each twice -> 8/10; 8 of them are in the prompt
    assert first["rep_ngram_ratio"] == pytest.approx(0.8)
    assert first["copy_overlap"] == pytest.approx(0.8)
    assert first["rep_line_ratio"] == 0.0
    assert first["non_alnum_ratio"] == pytest.approx(1 / 46)
    assert first["upper_ratio"] == 0.0 and first["lang"] == "en" and first["lang_score"] > 0.9
    assert not first["empty_response"]
    assert second["rep_line_ratio"] == pytest.approx(2 / 3)
    assert second["rep_ngram_ratio"] == 0.0  # "hello 123 hello", "123 hello 123", "hello 123 bye"
    assert second["upper_ratio"] == pytest.approx(10 / 13)
    assert second["non_alnum_ratio"] == pytest.approx(6 / 29)
    assert third["empty_response"] and not third["truncated_response"]
    assert third["lang"] is None and third["lang_score"] == 0.0
    assert third["rep_ngram_ratio"] == third["copy_overlap"] == third["non_alnum_ratio"] == 0.0


@pytest.mark.parametrize("text, cut", [
    ("The answer is 42.", False),
    ("Positive", False),  # short answers end without a period
    ("Here is the code:\n```python\nprint(1)\n```", False),
    ("Here is the code:\n```python\nprint(1)\n", True),  # unclosed fence
    ("And then they went to the...", True),
    ("And then they went to the…", True),
    ("Once upon a time there was a king who ruled the land and he", True),
    ("Once upon a time there was a king who ruled the land and he,", True),
    ("Steps:\n- Use a larger batch size and a lower learning rate here", False),  # list item
    ("## A heading that has quite a lot of words in it", False),
    ("Is it done? Yes it is, and it has ended well after all of it", True),
    ("It ends with a closing parenthesis after many many words (ok)", False),
    ("", False),
    (None, False),
])
def test_truncated_rule(text, cut):
    assert truncated(pa.array([text], pa.string()))[0] == cut


def test_truncated_at_a_token_limit():
    resp = pa.array(["one two three four five.", "one two."])
    assert truncated(resp, max_response_tokens=5).tolist() == [True, False]
    assert run(["p", "p"], resp.to_pylist(), max_response_tokens=5)[0]["truncated_response"]


# -- vectorized n-gram signals against plain Python ---------------------------
def words_of(text):
    return [w for w in re.split(r"[^\w]+|_", (text or "").lower()) if w]


def ref_repeated(items):
    counts = Counter(items)
    return sum(c for c in counts.values() if c > 1) / len(items) if items else 0.0


def ref_ngrams(words, n):
    return [tuple(words[i:i + n]) for i in range(len(words) - n + 1)]


def random_texts(rng, count, vocab):
    out = []
    for _ in range(count):
        k = int(rng.integers(0, 30))
        words = rng.choice(vocab, size=k)
        lines = np.array_split(words, max(1, int(rng.integers(1, 5))))
        out.append("\n".join(" ".join(line) for line in lines))
    return out


@pytest.mark.parametrize("n, vocab_size", [(3, 6), (2, 4), (10, 3), (10, 200)])
def test_ngram_signals_match_reference(n, vocab_size):
    # n=10 over >64 distinct words cannot pack into 64 bits: the hashed branch
    rng = np.random.default_rng(n * 1000 + vocab_size)
    vocab = np.array([f"w{i}" for i in range(vocab_size)])
    prompts, responses = random_texts(rng, 300, vocab), random_texts(rng, 300, vocab)
    p_rows, p_words = split_words(pa.array(prompts))
    r_rows, r_words = split_words(pa.array(responses))
    both = pa.concat_arrays([p_words, r_words]).dictionary_encode()
    codes, size = both.indices.to_numpy(), len(both.dictionary)
    if n == 10 and vocab_size == 200:  # (row, n-gram) keys are hashed, not packed
        assert (size - 1).bit_length() * n + (len(responses) - 1).bit_length() > 64
    rr, rk = ngram_keys(r_rows, codes[len(p_words):], n, size, len(responses))
    _, pk = ngram_keys(p_rows, codes[:len(p_words)], n, size, len(prompts))
    rep = repeated_share(rr, rk, len(responses))
    overlap = shared_share(rr, rk, pk, len(responses))
    lines = repeated_line_share(pa.array(responses))
    for i, (p, r) in enumerate(zip(prompts, responses)):
        grams = ref_ngrams(words_of(r), n)
        assert rep[i] == pytest.approx(ref_repeated(grams))
        in_prompt = set(ref_ngrams(words_of(p), n))
        expected = sum(g in in_prompt for g in grams) / len(grams) if grams else 0.0
        assert overlap[i] == pytest.approx(expected)
        kept = [line.strip() for line in r.split("\n") if line.strip()]
        assert lines[i] == pytest.approx(ref_repeated(kept))


# -- language ---------------------------------------------------------------------
TEXTS = [
    "The quick brown fox jumps over the lazy dog near the river bank.",
    "Le renard brun rapide saute par-dessus le chien paresseux.",
    "Der schnelle braune Fuchs springt über den faulen Hund.",
    "El rápido zorro marrón salta sobre el perro perezoso.",
    "敏捷的棕色狐狸跳过了懒狗。",
    "Привет, как дела? Всё хорошо.",
    "HELLO WORLD THIS IS SHOUTING IN ENGLISH",
    "def f(x):\n    return x + 1",
    "12345",
    "Ça va très bien, merci beaucoup! " * 40,
]


def test_language_matches_py3langid():
    py3langid = pytest.importorskip("py3langid.langid")
    ident = py3langid.LanguageIdentifier.from_model_file(py3langid.MODEL_FILE, norm_probs=True)
    lang, score = detect_language(pa.array(TEXTS + ["", "   "]))
    for i, text in enumerate(TEXTS):
        ref_lang, ref_score = ident.classify(text)
        assert lang[i].as_py() == ref_lang
        assert score[i].as_py() == pytest.approx(ref_score, abs=1e-4)
    assert lang.to_pylist()[:7] == ["en", "fr", "de", "es", "zh", "ru", "en"]
    assert lang.to_pylist()[-2:] == [None, None] and score.to_pylist()[-2:] == [0.0, 0.0]


def test_language_reads_the_head_of_prompt_and_response():
    fr = "Le renard brun rapide saute par-dessus le chien paresseux. "
    en = "The quick brown fox jumps over the lazy dog. "
    out = run([fr * 20], [en], lang_chars=40)
    short = run([fr * 20], [en], lang_chars=2000)
    assert out[0]["lang"] == "en"  # 40 chars of French, 45 of English
    assert short[0]["lang"] == "fr"


def test_param_validation():
    for bad in ({"ngram": 0}, {"min_words_cut": -1}, {"max_response_tokens": 0}, {"lang_chars": 1.5}):
        with pytest.raises(UsageError):
            QualitySignals(**bad)
    assert QualitySignals().params == {"ngram": 3, "min_words_cut": 8, "max_response_tokens": None,
                                       "lang_chars": 256}
