"""Heuristic quality signals per row (all computed on the response unless said).

* ``empty_response``: the response is empty or whitespace only.
* ``truncated_response``: the response looks cut off. True when any of:
  an unclosed code fence (an odd number of `````), it ends with ``...`` or
  ``…``, its last line ends mid-sentence (on a letter, ``,`` ``;`` ``:`` ``-``
  or an opening bracket) and has at least ``min_words_cut`` words and is not a
  list item, heading or table row (short answers such as "Positive" are not
  flagged), or (when ``max_response_tokens`` is given) its token estimate
  reaches that generation limit.
* ``rep_ngram_ratio``: word ``ngram``-grams (lower-cased letters/digits runs)
  that occur more than once in the response, as a share of all of them
  (data-juicer's ``word_repetition_ratio`` rule: every occurrence of a
  repeated n-gram counts). "a b c a b c" -> 2 of 4 trigrams -> 0.5.
* ``rep_line_ratio``: the same share over non-empty lines (stripped).
* ``non_alnum_ratio``: characters that are neither letters, digits nor
  whitespace, over all characters.
* ``upper_ratio``: upper-case letters over letters.
* ``lang`` / ``lang_score``: ISO 639-1 language and its probability from
  py3langid's naive-Bayes model, run here vectorized over the whole batch
  (same answers as ``py3langid.classify`` with normalized probabilities).
  The text is the first ``lang_chars`` characters of the prompt, a newline,
  and the first ``lang_chars`` of the response; null / 0.0 when it holds no
  letters the model knows (e.g. empty).
* ``copy_overlap``: response word ``ngram``-grams that also occur in the
  prompt, over all response ``ngram``-grams.

Ratios are 0.0 when their denominator is 0.
"""
from __future__ import annotations

from functools import lru_cache

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from thresher.errors import UsageError
from thresher.features.base import Batch, Featurizer, check_positive_int, string_column
from thresher.features.text import Utf8View, count_tokens, count_words

_NOT_WORD = r"[^\p{L}\p{N}\s]+"
_CUT_END = r"[\p{L},;:(\[{\-]$"
_STRUCTURED_LINE = r"^\s*([-*+•>#|]|\d+[.)])"
_LANG_ROWS = 8192  # rows per langid pass: bounds the (row, feature) hit arrays


class QualitySignals(Featurizer):
    """Heuristic quality signals (see the module docstring for every rule)."""

    name = "quality"
    version = "1"
    inputs = ("prompt", "response")
    output_columns = ("empty_response", "truncated_response", "rep_ngram_ratio", "rep_line_ratio",
                      "non_alnum_ratio", "upper_ratio", "lang", "lang_score", "copy_overlap")

    def __init__(self, ngram: int = 3, min_words_cut: int = 8, max_response_tokens: int | None = None,
                 lang_chars: int = 256):
        check_positive_int("ngram", ngram)
        check_positive_int("min_words_cut", min_words_cut)
        check_positive_int("max_response_tokens", max_response_tokens, allow_none=True)
        check_positive_int("lang_chars", lang_chars)
        self.ngram = ngram
        self.min_words_cut = min_words_cut
        self.max_response_tokens = max_response_tokens
        self.lang_chars = lang_chars

    def compute(self, batch: Batch) -> dict[str, pa.Array]:
        prompt, response = string_column(batch, "prompt"), string_column(batch, "response")
        lang, score = detect_language(_lang_text(prompt, response, self.lang_chars))
        rep_ngram, copy_overlap = ngram_signals(prompt, response, self.ngram)
        non_alnum, upper = char_ratios(response)
        return {
            "empty_response": pc.equal(pc.utf8_length(pc.utf8_trim_whitespace(response)), 0),
            "truncated_response": pa.array(truncated(response, self.min_words_cut, self.max_response_tokens)),
            "rep_ngram_ratio": pa.array(rep_ngram),
            "rep_line_ratio": pa.array(repeated_line_share(response)),
            "non_alnum_ratio": pa.array(non_alnum),
            "upper_ratio": pa.array(upper),
            "lang": lang,
            "lang_score": score,
            "copy_overlap": pa.array(copy_overlap),
        }


def char_ratios(text: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """(non-alphanumeric share of characters, upper-case share of letters) per text."""
    chars, other = _kept(text, None), _kept(text, r"[\p{L}\p{N}\s]+")
    # every character is a letter, a digit, ASCII whitespace or "other"
    letters = chars - other - _kept(text, r"[^\p{N}]+") - _ascii_spaces(text)
    return _ratio(other, chars), _ratio(_kept(text, r"[^\p{Lu}]+"), letters)


def ngram_signals(prompt: pa.Array, response: pa.Array, n: int) -> tuple[np.ndarray, np.ndarray]:
    """(rep_ngram_ratio, copy_overlap) per row over word n-grams."""
    p_rows, p_words = split_words(prompt)
    r_rows, r_words = split_words(response)
    encoded = pc.dictionary_encode(pa.concat_arrays([p_words, r_words]))  # one vocabulary for both
    words, vocab = encoded.indices.to_numpy(), len(encoded.dictionary)
    rows, grams = ngram_keys(r_rows, words[len(p_words):], n, vocab, len(response))
    _, prompt_grams = ngram_keys(p_rows, words[: len(p_words)], n, vocab, len(response))
    return repeated_share(rows, grams, len(response)), shared_share(rows, grams, prompt_grams, len(response))


# -- truncation --------------------------------------------------------------
def truncated(response: pa.Array, min_words_cut: int = 8, max_response_tokens: int | None = None) -> np.ndarray:
    """The `truncated_response` rule (module docstring) per response."""
    response = pc.fill_null(response, "")
    text = pc.utf8_rtrim_whitespace(response)
    open_fence = (_count(response, "```") % 2) == 1
    ellipsis = _np_bool(pc.match_substring_regex(text, r"(\.\.\.|…)$"))
    last_line = pc.replace_substring_regex(text, r"(?s)^.*\n", "")
    cut = (_np_bool(pc.match_substring_regex(last_line, _CUT_END))
           & (count_words(last_line) >= min_words_cut)
           & ~_np_bool(pc.match_substring_regex(last_line, _STRUCTURED_LINE)))
    out = open_fence | ellipsis | cut
    if max_response_tokens is not None:
        out |= count_tokens(response) >= max_response_tokens
    return out & (pc.utf8_length(text).to_numpy(zero_copy_only=False) > 0)


# -- n-grams and lines -------------------------------------------------------
def split_words(text: pa.Array) -> tuple[np.ndarray, pa.Array]:
    """(row of each word, lower-cased words): runs of letters/digits, in order."""
    # Deleting the rare separators first, then splitting on whitespace, is ~2x
    # faster than a regex split (Arrow's regex cost grows with the match count).
    spaced = pc.replace_substring_regex(pc.utf8_lower(text), _NOT_WORD, " ")
    lists = pc.utf8_split_whitespace(spaced)
    flat = pc.list_flatten(lists)
    rows = pc.list_parent_indices(lists).to_numpy()
    keep = pc.greater(pc.utf8_length(flat), 0)
    return rows[keep.to_numpy(zero_copy_only=False)], flat.filter(keep)


def ngram_keys(rows: np.ndarray, codes: np.ndarray, n: int, vocab: int, n_rows: int) -> tuple[np.ndarray, np.ndarray]:
    """(row, uint64 key) of every word n-gram that lies within one row; the key
    identifies the pair (row, n-gram).

    `rows` must be sorted (words of a row are contiguous); `codes` are word ids
    below `vocab`, rows are below `n_rows`. The row and the n codes are packed
    exactly when they fit in 64 bits, else hashed (a false match then needs a
    64-bit collision: about 1e-7 for a batch of millions of n-grams)."""
    m = len(codes) - n + 1
    if m <= 0:
        return np.empty(0, np.int64), np.empty(0, np.uint64)
    start = np.flatnonzero(rows[:m] == rows[n - 1:])
    return rows[start], _pack([rows[start]] + [codes[start + j] for j in range(n)], [n_rows] + [vocab] * n)


def _pack(columns: list[np.ndarray], sizes: list[int]) -> np.ndarray:
    """One uint64 per position: exact bit-packing of the columns, or a hash when they do not fit."""
    bits = [max(1, int(size - 1).bit_length()) for size in sizes]
    key = np.zeros(len(columns[0]), np.uint64)
    if sum(bits) <= 64:
        shift = 0
        for col, b in zip(columns, bits):
            key |= col.astype(np.uint64) << np.uint64(shift)
            shift += b
        return key
    with np.errstate(over="ignore"):
        for col in columns:  # multiply-xorshift mixing (splitmix64 constants)
            key = (key ^ col.astype(np.uint64)) * np.uint64(0x9E3779B97F4A7C15)
            key ^= key >> np.uint64(29)
    return key


def repeated_share(rows: np.ndarray, keys: np.ndarray, n_rows: int) -> np.ndarray:
    """Per row: its keys that occur more than once, over all its keys."""
    order = np.argsort(keys)
    k = keys[order]
    new = np.ones(len(k), bool)
    new[1:] = k[1:] != k[:-1]
    group = np.cumsum(new) - 1
    repeated = np.bincount(group)[group] > 1
    return _ratio(np.bincount(rows[order], weights=repeated, minlength=n_rows), np.bincount(rows, minlength=n_rows))


def repeated_line_share(text: pa.Array) -> np.ndarray:
    """`repeated_share` over the stripped non-empty lines of each text."""
    lists = pc.split_pattern(text, "\n")
    lines = pc.utf8_trim_whitespace(pc.list_flatten(lists))
    keep = pc.greater(pc.utf8_length(lines), 0)
    rows = pc.list_parent_indices(lists).to_numpy()[keep.to_numpy(zero_copy_only=False)]
    encoded = pc.dictionary_encode(lines.filter(keep))
    keys = _pack([rows, encoded.indices.to_numpy()], [len(text), len(encoded.dictionary)])
    return repeated_share(rows, keys, len(text))


def shared_share(rows: np.ndarray, keys: np.ndarray, other_keys: np.ndarray, n_rows: int) -> np.ndarray:
    """Per row: its keys found among `other_keys`, over all its keys."""
    other = np.sort(other_keys)
    order = np.argsort(keys)  # sorted needles make searchsorted ~5x faster (cache-friendly)
    found = np.zeros(len(keys), bool)
    if len(other):
        at = np.minimum(np.searchsorted(other, keys[order]), len(other) - 1)
        found[order] = other[at] == keys[order]
    return _ratio(np.bincount(rows, weights=found, minlength=n_rows), np.bincount(rows, minlength=n_rows))


# -- language ------------------------------------------------------------------
def _lang_text(prompt: pa.Array, response: pa.Array, chars: int) -> pa.Array:
    head = lambda a: pc.utf8_slice_codeunits(a, 0, chars)  # noqa: E731
    return pc.binary_join_element_wise(head(prompt), head(response), "\n")


def detect_language(text: pa.Array) -> tuple[pa.Array, pa.Array]:
    """(ISO 639-1 code or null, probability) per text, with py3langid's model."""
    langs, scores = [], []
    for start in range(0, len(text), _LANG_ROWS):
        lang, score = _detect_chunk(text.slice(start, _LANG_ROWS))
        langs.append(lang)
        scores.append(score)
    if not langs:
        return pa.array([], pa.string()), pa.array([], pa.float32())
    return pa.concat_arrays(langs), pa.concat_arrays(scores)


def _detect_chunk(text: pa.Array) -> tuple[pa.Array, pa.Array]:
    model = _langid_model()
    # py3langid lower-cases all-caps text and NFC-normalizes before reading bytes.
    text = pc.if_else(pc.utf8_is_upper(text), pc.utf8_lower(text), text)
    data = pc.utf8_normalize(text, "NFC").cast(pa.binary())
    lengths = pc.binary_length(data).to_numpy(zero_copy_only=False).astype(np.int64)
    rows, feats = model.walk(data, lengths)
    scores = model.scores(rows, feats, lengths)
    best = scores.argmax(axis=1)
    prob = scores[np.arange(len(best)), best]
    known = np.bincount(rows, minlength=len(lengths)) > 0
    lang = np.asarray(model.classes, dtype=object)[best]
    lang[~known] = None
    return pa.array(lang, pa.string()), pa.array(np.where(known, prob, 0.0).astype(np.float32))


class _LangidModel:
    """py3langid's byte DFA + naive Bayes tables as numpy arrays."""

    def __init__(self, identifier):
        self.nextmove = np.asarray(identifier.tk_nextmove)
        self.rowbase = np.asarray(identifier.tk_row).astype(np.int64) << 8
        self.output = np.asarray(identifier.tk_output, dtype=np.int32)
        self.ptc = np.asarray(identifier.nb_ptc, dtype=np.float32)  # 57 MB, converted once
        self.pc = np.asarray(identifier.nb_pc, dtype=np.float32)
        self.classes = list(identifier.nb_classes)
        self.alias_pairs = list(identifier._alias_pairs)

    def walk(self, data: pa.Array, lengths: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(row, feature) for every feature the DFA emits, all rows stepped together;
        rows are sorted longest first so the rows still walking are a prefix."""
        offsets = np.frombuffer(data.buffers()[1], dtype=np.int32)[data.offset: data.offset + len(data) + 1]
        buf = np.frombuffer(data.buffers()[2], dtype=np.uint8) if len(data) and data.buffers()[2] else \
            np.zeros(1, np.uint8)
        order = np.argsort(-lengths, kind="stable")
        starts = offsets[:-1][order].astype(np.int64)
        alive = np.searchsorted(-lengths[order], -np.arange(int(lengths.max(initial=0))), side="left")
        # states[t, j]: the DFA state of row order[j] after byte t (0, which emits
        # nothing, once the row has ended)
        states = np.zeros((len(alive), len(order)), self.nextmove.dtype)
        state = np.zeros(len(order), np.int64)
        for t, k in enumerate(alive):
            s = self.nextmove[self.rowbase[state[:k]] + buf[starts[:k] + t]]
            states[t, :k] = s
            state[:k] = s
        feats = self.output[states]
        step, col = np.nonzero(feats >= 0)
        return order[col], feats[step, col]

    def scores(self, rows: np.ndarray, feats: np.ndarray, lengths: np.ndarray) -> np.ndarray:
        """Normalized class probabilities per row (py3langid's `norm_probs=True`)."""
        from scipy import sparse

        x = sparse.coo_matrix((np.ones(len(rows), np.float32), (rows, feats)),
                              shape=(len(lengths), self.ptc.shape[0])).tocsr()  # sums repeats
        x.data = np.log1p(x.data)
        scores = np.asarray(x @ self.ptc) + self.pc
        scores *= (1.0 / np.sqrt(np.maximum(lengths, 1)))[:, None].astype(np.float32)
        scores = np.exp(scores - scores.max(axis=1, keepdims=True))
        scores /= scores.sum(axis=1, keepdims=True)
        for i, j in self.alias_pairs:  # a label listed twice: fold the duplicate column
            scores[:, i] += scores[:, j]
            scores[:, j] = 0.0
        return scores


@lru_cache(maxsize=1)
def _langid_model() -> _LangidModel:
    try:
        from py3langid.langid import MODEL_FILE, LanguageIdentifier
    except ImportError as exc:
        raise UsageError("the 'lang' quality signal needs py3langid: pip install py3langid") from exc
    return _LangidModel(LanguageIdentifier.from_model_file(MODEL_FILE, norm_probs=True))


# -- small helpers ---------------------------------------------------------------
def _count(text: pa.Array, pattern: str) -> np.ndarray:
    return pc.count_substring_regex(text, pattern).to_numpy(zero_copy_only=False).astype(np.int64)


def _kept(text: pa.Array, drop: str | None) -> np.ndarray:
    """Characters left per text after deleting runs of `drop` (a regex); counting
    what is left is much faster than counting frequent single-character matches."""
    if drop is not None:
        text = pc.replace_substring_regex(text, drop, "")
    return pc.utf8_length(text).to_numpy(zero_copy_only=False).astype(np.int64)


def _ascii_spaces(text: pa.Array) -> np.ndarray:
    view = Utf8View(text)
    return view.count(view.space())


def _np_bool(arr: pa.Array) -> np.ndarray:
    return np.asarray(pc.fill_null(arr, False).to_numpy(zero_copy_only=False), dtype=bool)


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    num, den = np.asarray(num, np.float64), np.asarray(den, np.float64)
    return np.divide(num, den, out=np.zeros_like(num), where=den > 0)
