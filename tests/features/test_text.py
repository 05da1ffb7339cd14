"""Length features: chars, words, tokens and turns on rows with known counts."""
from __future__ import annotations

import pyarrow as pa
import pytest

from thresher.data.formats import MESSAGE_TYPE
from thresher.errors import UsageError
from thresher.features.text import TextStats, count_tokens, count_turns, count_words


def batch(prompts, responses, messages=None):
    if messages is None:
        messages = [[{"role": "user", "content": p}, {"role": "assistant", "content": r}]
                    for p, r in zip(prompts, responses)]
    return pa.table({"prompt": pa.array(prompts, pa.string()), "response": pa.array(responses, pa.string()),
                     "messages": pa.array(messages, MESSAGE_TYPE)})


def test_counts_on_known_rows():
    out = TextStats()(batch(["Say hi", "Add 12+3", ""], ["Hello there, friend!", "", "ok"])).to_pylist()
    assert [r["prompt_chars"] for r in out] == [6, 8, 0]
    assert [r["response_chars"] for r in out] == [20, 0, 2]
    assert [r["chars"] for r in out] == [26, 8, 2]
    assert [r["prompt_words"] for r in out] == [2, 2, 0]
    assert [r["response_words"] for r in out] == [3, 0, 1]
    assert [r["words"] for r in out] == [5, 2, 1]
    # approx tokens: "Say" "hi" | "Add" "1" "2" "+" "3" | "Hello" "there" "," "friend" "!"
    assert [r["prompt_tokens"] for r in out] == [2, 5, 0]
    assert [r["response_tokens"] for r in out] == [5, 0, 1]
    assert [r["tokens"] for r in out] == [7, 5, 1]
    assert [r["turns"] for r in out] == [1, 1, 1]
    assert [r["n_messages"] for r in out] == [2, 2, 2]


def test_nulls_count_as_empty():
    out = TextStats()(batch([None, "a"], ["b", None])).to_pylist()
    assert [(r["prompt_chars"], r["response_chars"]) for r in out] == [(0, 1), (1, 0)]


def test_cjk_characters_are_words_and_two_tokens_each():
    text = pa.array(["你好世界", "hello 世界"])
    assert count_words(text).tolist() == [4, 3]
    assert count_tokens(text).tolist() == [8, 5]


def test_long_words_split_into_pieces_of_nine_letters():
    text = pa.array(["internationalization", "a\n\n  b", "naïve"])
    # 20 letters -> 9 + 9 + 2; newline-led whitespace is one token; "ï" is a token of its own
    assert count_tokens(text).tolist() == [3, 3, 3]  # "na" "ï" "ve"


def test_turns_count_user_messages_only():
    msgs = [
        [{"role": "system", "content": "be nice"}, {"role": "user", "content": "hi"},
         {"role": "assistant", "content": "hello"}, {"role": "user", "content": "bye"},
         {"role": "assistant", "content": "bye"}],
        [],
        None,
        [{"role": "assistant", "content": "just text"}],
    ]
    b = batch(["", "", "", ""], ["", "", "", ""], msgs)
    turns, n_messages = count_turns(b)
    assert turns.tolist() == [2, 0, 0, 0]
    assert n_messages.tolist() == [5, 0, 0, 1]


def test_tokenizer_file(tmp_path):
    from tokenizers import Tokenizer, models, pre_tokenizers

    tok = Tokenizer(models.WordLevel({"[UNK]": 0, "hello": 1}, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.save(str(tmp_path / "tokenizer.json"))
    for spec in (str(tmp_path), str(tmp_path / "tokenizer.json")):
        out = TextStats(tokenizer=spec)(batch(["hello world, again"], ["hello"])).to_pylist()[0]
        assert (out["prompt_tokens"], out["response_tokens"], out["tokens"]) == (4, 1, 5)


def test_bad_tokenizer_is_a_usage_error(tmp_path):
    with pytest.raises(UsageError, match="tokenizer.json"):
        TextStats(tokenizer=str(tmp_path / "missing"))
    with pytest.raises(UsageError):
        TextStats(tokenizer="")


def test_params_and_columns():
    f = TextStats()
    assert f.params == {"tokenizer": "approx"}
    assert f.columns[:3] == ["chars", "words", "tokens"] and f.scope == "row"


def _cjk_class():
    from thresher.features.text import _CJK_RANGES

    ranges = "".join(f"\\x{{{lo:X}}}-\\x{{{hi:X}}}" for lo, hi in _CJK_RANGES)
    return f"[{ranges}\\x{{20000}}-\\x{{3FFFF}}]", ranges


@pytest.mark.parametrize("slice_bytes", [1 << 22, 64])
def test_byte_counting_matches_the_documented_regexes(monkeypatch, slice_bytes):
    import numpy as np
    import pyarrow.compute as pc

    from thresher.features import text as text_module

    monkeypatch.setattr(text_module, "_SLICE_BYTES", slice_bytes)  # 64: many slices, rows cut apart
    alphabet = list("abcXYZ019 .,!?-_\t\n\r\f\x0b") + ["é", "ß", "中", "文", "ひ", "カ", "한", "𠀀", "😀", "\u00a0",
                                                      "\u3000", "ᄀ"] + ["internationalization", "  \n \n  "]
    rng = np.random.default_rng(7)
    texts = ["".join(rng.choice(alphabet, size=int(rng.integers(0, 60)))) for _ in range(400)]
    texts += ["", "x" * 200, "\n", "中" * 50]
    arr = pa.array(texts)
    cjk, ranges = _cjk_class()
    token_re = r"[A-Za-z]{1,9}|[^\x00-\x7F]|[0-9]|[^\s\p{L}\p{N}]|\n\s*"
    expected_tokens = (pc.count_substring_regex(arr, token_re).to_numpy()
                       + pc.count_substring_regex(arr, cjk).to_numpy())
    expected_words = pc.count_substring_regex(arr, f"{cjk}|[^\\s{ranges}\\x{{20000}}-\\x{{3FFFF}}]+").to_numpy()
    np.testing.assert_array_equal(count_tokens(arr), expected_tokens)
    np.testing.assert_array_equal(count_words(arr), expected_words)
    sliced = arr.slice(3, 50)  # an array that does not start at offset 0
    np.testing.assert_array_equal(count_tokens(sliced), expected_tokens[3:53])
