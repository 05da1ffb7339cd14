"""EDA text augmentation (Wei & Zou, 2019): synonym replacement (sr), random
insertion of a synonym (ri), random swap (rs) and random deletion (rd).

A text is split into words and separators; protected spans (numbers and any
token holding a digit, inline and fenced code, URLs, e-mails, tags,
{placeholders} and user-given words/labels) stay inside separators, so no
operation can edit, move or delete them, and the text's own formatting
(newlines, punctuation) survives. Each operation changes
n = max(1, round(alpha * words)) words (rounding half up). Every output comes
from one operation, chosen round-robin from a per-text random start.

`EDA.augment` returns exactly `n_aug` outputs, distinct from each other and
from the source, or fewer with a reason: random tries are bounded and, if
they come up short, the (bounded) set of every output the operations can
produce is enumerated, so "only 2 distinct variants exist" is a fact, not a
guess. Randomness comes from a generator seeded by (seed, key), so a text's
outputs do not depend on what else is augmented or in which order.

This module is the augmenter (what to edit, how many words, which variants);
splitting a text into words and the edits themselves are
`thresher.balance.words` (re-exported here).
"""
from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from itertools import combinations, islice, product
from typing import Iterator, Mapping, Sequence

import numpy as np

from thresher.balance.words import (delete_words, insert_word, pattern_for, protected_spans,  # noqa: F401
                                    render, replace_words, split_text, swap_words, tokenize)
from thresher.errors import UsageError

OPS = ("sr", "ri", "rs", "rd")

# The stop-word list of the reference EDA implementation (jasonwei20/eda_nlp):
# sr and ri never pick these words.
STOP_WORDS = frozenset("""
i me my myself we our ours ourselves you your yours yourself yourselves he him his himself she her hers
herself it its itself they them their theirs themselves what which who whom this that these those am is
are was were be been being have has had having do does did doing a an the and but if or because as until
while of at by for with about against between into through during before after above below to from up
down in out on off over under again further then once here there when where why how all any both each
few more most other some such no nor not only own same so than too very s t can will just don should now
""".split())

_CLEAN_SYNONYM = re.compile(r"[^\W\d_]+(?:[ '\-][^\W\d_]+)*")


def n_changes(alpha: float, n_words: int) -> int:
    """max(1, round(alpha * n_words)), rounding half up."""
    return max(1, int(alpha * n_words + 0.5))


class Draws:
    """Uniform draws that depend only on (seed, key), e.g. (run seed, row id).

    The stream is BLAKE2b in counter mode: block i is the 64-byte digest of
    (seed, key, i), read as eight 53-bit uniforms. Building a numpy Generator
    per row costs 10-20x more than a whole row's edits need, and one shared
    Generator would make a row's outputs depend on the rows before it.
    """

    __slots__ = ("prefix", "block", "buf", "i")

    def __init__(self, seed: int, key: str):
        self.prefix = f"{seed}\x1f{key}\x1f".encode("utf-8")
        self.block = 0
        self.buf: list[float] = []
        self.i = 0

    def random(self) -> float:
        """A float in [0, 1)."""
        if self.i >= len(self.buf):
            digest = hashlib.blake2b(self.prefix + str(self.block).encode(), digest_size=64).digest()
            self.buf = ((np.frombuffer(digest, dtype=np.uint64) >> np.uint64(11)) * _TWO_M53).tolist()
            self.block += 1
            self.i = 0
        u = self.buf[self.i]
        self.i += 1
        return u

    def below(self, n: int) -> int:
        """An integer in [0, n)."""
        if self.i >= len(self.buf):
            self.random()
            self.i -= 1
        u = self.buf[self.i]
        self.i += 1
        return min(int(u * n), n - 1)

    def sample(self, n: int, m: int) -> list[int]:
        """m distinct integers of [0, n), in random order (partial Fisher-Yates)."""
        pool = list(range(n))
        for i in range(m):
            j = i + self.below(n - i)
            pool[i], pool[j] = pool[j], pool[i]
        return pool[:m]


_TWO_M53 = 2.0 ** -53


# -- the augmenter ------------------------------------------------------------
@dataclass
class Variants:
    """The outputs for one source: `texts` (one tuple of unit texts each), the
    operation that made each, and why there are fewer than asked (else None)."""

    texts: list[tuple[str, ...]] = field(default_factory=list)
    ops: list[str] = field(default_factory=list)
    reason: str | None = None


class _Unit:
    """One text, tokenized once; synonym candidates found on first use."""

    __slots__ = ("text", "seps", "words", "_cands", "_eda")

    def __init__(self, text: str, pattern: re.Pattern, eda: "EDA"):
        self.text = text
        self.seps, self.words = split_text(text, pattern)
        self._cands: list[tuple[int, tuple[str, ...]]] | None = None
        self._eda = eda

    @property
    def cands(self) -> list[tuple[int, tuple[str, ...]]]:
        """(position, synonyms) of the words sr/ri may use."""
        if self._cands is None:
            syn = self._eda.synonyms
            self._cands = [(i, s) for i, w in enumerate(self.words) if (s := syn(w))]
        return self._cands

    def can(self, op: str) -> bool:
        n = len(self.words)
        if op in ("sr", "ri"):
            return bool(n and self.cands)
        if op == "rs":
            return n >= 2 and len(set(self.words)) >= 2
        return n >= 2


class EDA:
    """Easy Data Augmentation over texts.

    ops: the operations to use (any of "sr", "ri", "rs", "rd").
    alpha: fraction of words each operation changes, one float or one per op
        ({"sr": 0.1, "rd": 0.2}; ops not named get 0.1).
    n_aug: distinct outputs wanted per source.
    protect: words/labels that are never edited (case-insensitive, whole words).
    stop_words: words sr/ri never replace or take synonyms of (default: EDA's list).
    wordnet: a `thresher.balance.wordnet.WordNet` (default: the shipped WordNet 3.0).
    max_tries: random tries per source before enumerating (default 8 * n_aug + 16).
    """

    def __init__(self, ops: Sequence[str] = OPS, alpha: float | Mapping[str, float] = 0.1, n_aug: int = 4,
                 protect: Sequence[str] = (), stop_words: Sequence[str] | None = None, wordnet=None,
                 max_tries: int | None = None):
        self.ops = tuple(check_ops(ops))
        self.alpha = check_alpha(alpha, self.ops)
        if isinstance(n_aug, bool) or not isinstance(n_aug, (int, np.integer)) or not 1 <= n_aug <= 10_000:
            raise UsageError(f"n_aug must be an integer in [1, 10000], got {n_aug!r}")
        self.n_aug = int(n_aug)
        if isinstance(protect, str):
            protect = [protect]
        self.protect = tuple(str(p).strip() for p in protect if str(p).strip())
        self.stop_words = STOP_WORDS if stop_words is None else frozenset(w.lower() for w in stop_words)
        if max_tries is not None and (not isinstance(max_tries, (int, np.integer)) or max_tries < 1):
            raise UsageError(f"max_tries must be a positive integer, got {max_tries!r}")
        self.max_tries = int(max_tries) if max_tries is not None else 8 * self.n_aug + 16
        self._wordnet = wordnet
        self._syn_cache: dict[str, tuple[str, ...]] = {}

    @property
    def wordnet(self):
        if self._wordnet is None:
            from thresher.balance.wordnet import default_wordnet

            self._wordnet = default_wordnet()
        return self._wordnet

    def synonyms(self, word: str) -> tuple[str, ...]:
        """WordNet synonyms usable for `word` (none for stop words; letters, spaces,
        hyphens and apostrophes only)."""
        key = word.lower()
        hit = self._syn_cache.get(key)
        if hit is None:
            if key in self.stop_words:
                hit = ()
            else:
                hit = tuple(s for s in self.wordnet.synonyms(key) if _CLEAN_SYNONYM.fullmatch(s))
            self._syn_cache[key] = hit
        return hit

    # -- public ---------------------------------------------------------------
    def augment(self, text: str, seed: int = 0, key: str | None = None, label: str | None = None) -> Variants:
        """Variants of one text (`texts` holds 1-tuples). `key` (default: the text)
        with `seed` fixes the randomness; `label` is protected too."""
        return self.augment_units([text], seed, text if key is None else key, label)

    def augment_units(self, units: Sequence[str], seed: int, key: str, label: str | None = None) -> Variants:
        """Variants of a row made of several texts (e.g. instruction and input):
        each output applies one operation to every text that allows it."""
        terms = self.protect + ((str(label),) if label not in (None, "") else ())
        parsed = [_Unit(t or "", pattern_for(t or "", terms), self) for t in units]
        if not any(u.words for u in parsed):
            return Variants(reason="no editable words (empty, or only numbers, code, URLs, "
                                   "protected words or punctuation)")
        feasible = [op for op in self.ops if any(u.can(op) for u in parsed)]
        if not feasible:
            return Variants(reason=self._infeasible_reason(parsed))
        draws = Draws(seed, key)
        source = tuple(u.text for u in parsed)
        seen = {source}
        out = Variants()
        start = draws.below(len(feasible))
        for t in range(self.max_tries):
            if len(out.texts) >= self.n_aug:
                break
            op = feasible[(start + t) % len(feasible)]
            cand = tuple(self._apply(op, u, draws) for u in parsed)
            if cand not in seen:
                seen.add(cand)
                out.texts.append(cand)
                out.ops.append(op)
        if len(out.texts) < self.n_aug:
            self._fill_by_enumeration(parsed, feasible, seen, out, draws)
        return out

    # -- internals ------------------------------------------------------------
    def _k(self, op: str, unit: _Unit) -> int:
        return n_changes(self.alpha[op], len(unit.words))

    def _apply(self, op: str, u: _Unit, d: Draws) -> str:
        if not u.can(op):
            return u.text
        k = self._k(op, u)
        if op == "sr":
            cands = u.cands
            picks = d.sample(len(cands), min(k, len(cands)))
            choices = {cands[p][0]: cands[p][1][d.below(len(cands[p][1]))] for p in picks}
            return render(*replace_words(u.seps, u.words, choices))
        if op == "ri":
            seps, words = u.seps, u.words
            for _ in range(k):
                syns = u.cands[d.below(len(u.cands))][1]
                seps, words = insert_word(seps, words, d.below(len(words) + 1), syns[d.below(len(syns))])
            return render(seps, words)
        n = len(u.words)
        if op == "rs":
            pairs = []
            for _ in range(k):
                i, j = d.below(n), d.below(n - 1)
                pairs.append((i, j + (j >= i)))
            return render(*swap_words(u.seps, u.words, pairs))
        return render(*delete_words(u.seps, u.words, set(d.sample(n, min(k, n - 1)))))

    def _infeasible_reason(self, parsed: list[_Unit]) -> str:
        n = max(len(u.words) for u in parsed)
        why = {"sr": "no word has a WordNet synonym", "ri": "no word has a WordNet synonym",
               "rs": "needs two different words", "rd": "needs at least two words"}
        return (f"no operation applies to a text of {n} editable word{'s' if n != 1 else ''}: "
                + "; ".join(f"{op} {why[op]}" for op in self.ops))

    def _fill_by_enumeration(self, parsed, feasible, seen, out: Variants, draws: Draws) -> None:
        """Top up from the enumerated outputs of every op (bounded); if they are
        all used, say how many exist."""
        need = self.n_aug - len(out.texts)
        cap = 2 * self.n_aug + len(seen) + 2
        fresh: dict[tuple[str, ...], str] = {}
        exhaustive = True
        for op in feasible:
            per_unit = []
            for u in parsed:
                if u.can(op):
                    texts, done = _support(self, op, u, cap)
                    exhaustive &= done
                else:
                    texts = [u.text]
                per_unit.append(texts)
            total = 1
            for texts in per_unit:
                total *= len(texts)
            exhaustive &= total <= cap * cap
            for cand in islice(product(*per_unit), cap * cap):
                if cand not in seen and cand not in fresh:
                    fresh[cand] = op
        found = list(fresh.items())
        picks = draws.sample(len(found), min(need, len(found)))
        for p in picks:
            out.texts.append(found[p][0])
            out.ops.append(found[p][1])
        if len(out.texts) < self.n_aug:
            n = sum(len(u.words) for u in parsed)
            have = len(out.texts)
            what = "exist" if exhaustive else "were found (search capped)"
            out.reason = (f"only {have} distinct variant{'s' if have != 1 else ''} {what} for a text of {n} "
                          f"editable word{'s' if n != 1 else ''} with ops {','.join(self.ops)}")


def _support(eda: EDA, op: str, u: _Unit, cap: int) -> tuple[list[str], bool]:
    """Texts `op` can make from `u`: at most 8 * cap of them, and whether that is all."""
    limit = 8 * cap
    gen = _enumerate(op, u, eda._k(op, u), limit)
    found = dict.fromkeys(islice(gen, limit))
    complete = next(gen, _DONE) is _DONE and _CUT not in found
    found.pop(_CUT, None)
    return list(found), complete


_DONE = object()
_CUT = "\x00cut"  # yielded last by a search that dropped states


def _enumerate(op: str, u: _Unit, k: int, limit: int) -> Iterator[str]:
    """Lazily, every output of `op` with k changes (repeats possible). Searches
    over swap/insert sequences keep at most `limit` states per step and then
    yield a marker, so the caller knows the list may be incomplete."""
    n = len(u.words)
    if op == "sr":
        m = min(k, len(u.cands))
        for combo in combinations(u.cands, m):
            for choice in product(*(s for _, s in combo)):
                yield render(*replace_words(u.seps, u.words, {p: c for (p, _), c in zip(combo, choice)}))
        return
    if op == "rd":
        for combo in combinations(range(n), min(k, n - 1)):
            yield render(*delete_words(u.seps, u.words, set(combo)))
        return
    cut = False
    if op == "rs":
        level = {tuple(u.words): None}
        for _ in range(k):
            nxt: dict = {}
            for w in level:
                for i, j in combinations(range(n), 2):
                    nxt.setdefault(tuple(swap_words(u.seps, w, [(i, j)])[1]), None)
                if len(nxt) >= limit:
                    cut = True
                    break
            level = nxt
        yield from (render(u.seps, w) for w in level)
    else:  # ri
        syns = list(dict.fromkeys(s for _, ss in u.cands for s in ss))
        level = {(tuple(u.seps), tuple(u.words)): None}
        for _ in range(k):
            nxt = {}
            for seps, words in level:
                for pos in range(len(words) + 1):
                    for s in syns:
                        a, b = insert_word(seps, words, pos, s)
                        nxt.setdefault((tuple(a), tuple(b)), None)
                if len(nxt) >= limit:
                    cut = True
                    break
            level = nxt
        yield from (render(seps, words) for seps, words in level)
    if cut:
        yield _CUT


def check_ops(ops: Sequence[str] | str) -> list[str]:
    """Validated, de-duplicated op names ("sr,rd" or a list)."""
    if isinstance(ops, str):
        ops = [o.strip() for o in ops.split(",") if o.strip()]
    ops = list(dict.fromkeys(ops))
    bad = [o for o in ops if o not in OPS]
    if bad or not ops:
        raise UsageError(f"--ops: unknown operation(s) {', '.join(map(repr, bad)) or '(none given)'}; "
                         f"choose from {','.join(OPS)} (sr synonym replacement, ri random insertion, "
                         "rs random swap, rd random deletion)")
    return ops


def check_alpha(alpha: float | Mapping[str, float] | str, ops: Sequence[str]) -> dict[str, float]:
    """alpha per op from a float, a mapping, or text ("0.1" or "sr=0.1,rd=0.2")."""
    if isinstance(alpha, str):
        alpha = _parse_alpha(alpha)
    if isinstance(alpha, Mapping):
        unknown = [k for k in alpha if k not in OPS]
        if unknown:
            raise UsageError(f"--alpha: unknown operation(s) {', '.join(map(repr, unknown))}; use e.g. sr=0.1,rd=0.2")
        values = {op: alpha.get(op, 0.1) for op in OPS}
    else:
        values = {op: alpha for op in OPS}
    for op, a in values.items():
        if isinstance(a, bool) or not isinstance(a, (int, float, np.floating)) or not 0 < a <= 1:
            raise UsageError(f"--alpha for {op} must be a number in (0, 1], got {a!r}")
    return {op: float(a) for op, a in values.items()}


def _parse_alpha(text: str) -> float | dict[str, float]:
    try:
        if "=" not in text:
            return float(text)
        out = {}
        for part in text.split(","):
            op, _, value = part.partition("=")
            out[op.strip()] = float(value)
        return out
    except ValueError:
        raise UsageError(f"--alpha: expected a number or OP=NUMBER pairs (sr=0.1,rd=0.2), got {text!r}") from None
