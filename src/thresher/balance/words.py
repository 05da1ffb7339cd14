"""A text as words and separators, and the four word-level edits of EDA.

`tokenize` splits a text into (separators, words) with
``text == seps[0] + words[0] + seps[1] + ... + seps[-1]``; protected spans
(numbers and any token holding a digit, inline and fenced code, URLs,
e-mails, tags, {placeholders} and user-given words) are folded into the
separators, so no edit can touch them. The edits (replace, insert, swap,
delete) work on that pair and keep the text's own formatting. What to edit,
and how many words, is decided by the augmenter, `thresher.balance.eda`.
"""
from __future__ import annotations

import re
from functools import lru_cache
from itertools import chain
from typing import Mapping, Sequence

_PROTECTED = (
    r"(?s:```.*?(?:```|\Z))",  # fenced code (an unclosed fence runs to the end)
    r"`[^`\n]+`",  # inline code
    r"(?:https?|ftp)://\S+|www\.\S+",  # URLs
    r"<[^<>\n]+>",  # tags
    r"\{[^{}\n]*\}",  # template placeholders
)
# These two cost a scan of every word they fail on, so they join the pattern
# only for texts that hold an '@' / a digit.
_EMAIL = r"[\w.+-]+@[\w-]+\.[\w.-]+"
_NUMBER = r"\S*\d\S*"  # numbers, and any token holding a digit
_HAS_DIGIT = re.compile(r"\d")
_WORD = r"[^\W\d_]+(?:['\u2019-][^\W\d_]+)*"


@lru_cache(maxsize=4096)
def protect_pattern(terms: tuple[str, ...] = (), digits: bool = True, emails: bool = True) -> re.Pattern:
    """The tokenizer: protected spans (terms first, case-insensitive, as whole words) or a word."""
    parts = []
    for term in sorted({t for t in terms if t and t.strip()}, key=lambda t: (-len(t), t)):
        left = r"(?<!\w)" if re.match(r"\w", term) else ""
        right = r"(?!\w)" if re.search(r"\w$", term) else ""
        parts.append(f"{left}{re.escape(term)}{right}")
    terms_re = f"(?i:{'|'.join(parts)})|" if parts else ""
    spans = _PROTECTED + ((_EMAIL,) if emails else ()) + ((_NUMBER,) if digits else ())
    return re.compile(f"(?P<p>{terms_re}{'|'.join(spans)})|(?P<w>{_WORD})")


def pattern_for(text: str, terms: tuple[str, ...]) -> re.Pattern:
    """The cheapest tokenizer that protects everything `text` holds."""
    return protect_pattern(terms, _HAS_DIGIT.search(text) is not None, "@" in text)


def tokenize(text: str, protect: Sequence[str] = ()) -> tuple[list[str], list[str]]:
    """(separators, words) with text == seps[0] + words[0] + seps[1] + ... + seps[-1].

    Protected spans are part of the separators.
    """
    return split_text(text, pattern_for(text, tuple(protect)))


def render(seps: Sequence[str], words: Sequence[str]) -> str:
    """The text of (separators, words)."""
    return "".join(chain.from_iterable(zip(seps, words))) + seps[-1]


def protected_spans(text: str, protect: Sequence[str] = ()) -> list[str]:
    """The protected spans of `text` (what no operation may change)."""
    return [m.group() for m in pattern_for(text, tuple(protect)).finditer(text) if m.lastgroup == "p"]


def split_text(text: str, pattern: re.Pattern) -> tuple[list[str], list[str]]:
    # pattern.split gives [sep, protected, word, sep, protected, word, ..., sep]
    # (one of protected/word is None); protected spans fold into separators.
    parts = pattern.split(text)
    protected = parts[1::3]
    if protected.count(None) == len(protected):
        return parts[0::3], parts[2::3]
    seps, words, cur = [], [], parts[0]
    for i in range(1, len(parts), 3):
        word = parts[i + 1]
        if word is None:
            cur += parts[i] + parts[i + 2]
        else:
            seps.append(cur)
            words.append(word)
            cur = parts[i + 2]
    seps.append(cur)
    return seps, words


def match_case(source: str, synonym: str) -> str:
    """`synonym` written like `source` (Title, UPPER); WordNet's own capitals are kept."""
    if synonym != synonym.lower():
        return synonym
    if len(source) > 1 and source.isupper():
        return synonym.upper()
    if source[:1].isupper():
        return synonym[:1].upper() + synonym[1:]
    return synonym


def replace_words(seps, words, choices: Mapping[int, str]):
    """sr: word i becomes choices[i] (in the case of the word it replaces)."""
    new = list(words)
    for i, s in choices.items():
        new[i] = match_case(words[i], s)
    return list(seps), new


def insert_word(seps, words, pos: int, word: str):
    """ri: `word` inserted before words[pos] (pos == len(words): after the last word)."""
    seps, words = list(seps), list(words)
    if pos == 0:
        seps[0:1] = [seps[0], " "]
    else:
        seps.insert(pos, " ")
    words.insert(pos, word)
    return seps, words


def swap_words(seps, words, pairs: Sequence[tuple[int, int]]):
    """rs: swap the words at each (i, j) in turn; separators stay in place."""
    new = list(words)
    for i, j in pairs:
        new[i], new[j] = new[j], new[i]
    return list(seps), new


def delete_words(seps, words, drop: set[int]):
    """rd: remove the words in `drop`; the separators around a removed word
    merge, keeping all their non-blank text (protected spans, punctuation)."""
    kept = [i for i in range(len(words)) if i not in drop]
    if not kept:
        raise ValueError("delete_words must keep at least one word")
    first, last = kept[0], kept[-1]
    out_seps, out_words, cur = [], [], seps[0]
    for i, w in enumerate(words):
        if i in drop:
            cur = _merge(cur, seps[i + 1], leading=i < first, trailing=i > last)
        else:
            out_seps.append(cur)
            out_words.append(w)
            cur = seps[i + 1]
    out_seps.append(cur)
    return out_seps, out_words


def _merge(a: str, b: str, leading: bool, trailing: bool) -> str:
    """The separator left when the word between `a` and `b` goes: all their
    non-blank text, one run of their whitespace (none at the text's edges or
    before closing punctuation), and never two tokens glued together."""
    a_core, b_core = a.rstrip(), b.lstrip()
    ws = a[len(a_core):] or b[: len(b) - len(b_core)]
    if leading and not a_core:
        return b_core
    if trailing and not b_core:
        return a_core
    if b_core[:1] in _CLOSING:
        ws = ""
    elif not ws and a_core and b_core:
        ws = " "
    return a_core + ws + b_core


_CLOSING = tuple(".,;:!?)]}")
