"""Offline WordNet 3.0 synonyms: a reader of the Princeton files and of the
compact asset shipped with thresher (built by scripts/build_wordnet_asset.py).

The asset is a UTF-8 text file, xz-compressed, in three sections:

    thresher-wordnet-synonyms 1
    L <n>          then n lemmas, one per line, as written in the data files
    S <n>          then n synsets: "<pos> <lemma index> <lemma index> ..."
    E <n>          then n exceptions: "<pos> <inflected form> <base> [<base>...]"

Synonyms of a word are the other lemmas of every synset of any of its base
forms (nltk's `morphy`: the exception lists, then suffix rules), in synset
order; underscores become spaces; the word and its base forms are left out.
"""
from __future__ import annotations

import lzma
from functools import lru_cache
from pathlib import Path

import numpy as np

from thresher.errors import InputError

ASSET = Path(__file__).resolve().parent.parent / "assets" / "wordnet" / "wordnet-3.0-synonyms.txt.xz"
MAGIC = "thresher-wordnet-synonyms 1"
POS_FILES = (("n", "noun"), ("v", "verb"), ("a", "adj"), ("r", "adv"))
# nltk's WordNetCorpusReader.MORPHOLOGICAL_SUBSTITUTIONS (satellites use the adjective rules).
SUFFIX_RULES = {
    "n": (("s", ""), ("ses", "s"), ("ves", "f"), ("xes", "x"), ("zes", "z"), ("ches", "ch"), ("shes", "sh"),
          ("men", "man"), ("ies", "y")),
    "v": (("s", ""), ("ies", "y"), ("es", "e"), ("es", ""), ("ed", "e"), ("ed", ""), ("ing", "e"), ("ing", "")),
    "a": (("er", ""), ("est", ""), ("er", "e"), ("est", "e")),
    "r": (),
}


class WordNet:
    """Synsets as lemma lists (CSR arrays), a lookup by lower-cased lemma, and morphology."""

    def __init__(self, lemmas: list[str], synset_pos: list[str], member_flat: np.ndarray,
                 member_offsets: np.ndarray, exceptions: dict[str, dict[str, tuple[str, ...]]]):
        self.lemmas = lemmas
        self._raw_pos = synset_pos
        self.synset_pos = np.array(synset_pos, dtype="<U1")
        self.synset_pos[self.synset_pos == "s"] = "a"  # satellites are adjectives
        self.member_flat = np.asarray(member_flat, dtype=np.int64)
        self.member_offsets = np.asarray(member_offsets, dtype=np.int64)
        self.exceptions = exceptions
        self._key_row, self._key_offsets, self._key_synsets = _build_index(lemmas, self.member_flat,
                                                                           self.member_offsets)
        self._cache: dict[str, tuple[str, ...]] = {}

    @property
    def n_synsets(self) -> int:
        return len(self.member_offsets) - 1

    def members(self, synset: int) -> list[str]:
        """The lemmas of one synset, as written in the data files."""
        a, b = self.member_offsets[synset], self.member_offsets[synset + 1]
        return [self.lemmas[i] for i in self.member_flat[a:b].tolist()]

    def _lookup(self, key: str) -> list[int]:
        row = self._key_row.get(key)
        if row is None:
            return []
        return self._key_synsets[self._key_offsets[row]:self._key_offsets[row + 1]].tolist()

    # -- construction ---------------------------------------------------------
    @classmethod
    def from_princeton(cls, folder: str | Path) -> "WordNet":
        """Read data.{noun,verb,adj,adv} and {noun,verb,adj,adv}.exc from a WordNet 3.0 folder."""
        folder = Path(folder)
        lemma_id: dict[str, int] = {}
        lemmas: list[str] = []
        synset_pos: list[str] = []
        members: list[list[int]] = []
        for _pos, name in POS_FILES:
            path = folder / f"data.{name}"
            if not path.exists():
                raise InputError(str(path), "missing WordNet data file (expected Princeton WordNet 3.0 files)")
            for pos, words in _read_data_file(path):
                ids = []
                for w in words:
                    if w not in lemma_id:
                        lemma_id[w] = len(lemmas)
                        lemmas.append(w)
                    ids.append(lemma_id[w])
                synset_pos.append(pos)
                members.append(ids)
        exceptions = {pos: _read_exc_file(folder / f"{name}.exc") for pos, name in POS_FILES}
        flat = np.fromiter((i for m in members for i in m), dtype=np.int64)
        offsets = np.r_[0, np.cumsum([len(m) for m in members])].astype(np.int64)
        return cls(lemmas, synset_pos, flat, offsets, exceptions)

    @classmethod
    def from_asset(cls, path: str | Path = ASSET) -> "WordNet":
        """Load the compact asset written by `write_asset`."""
        path = Path(path)
        try:
            text = lzma.decompress(path.read_bytes()).decode("utf-8")
        except (OSError, lzma.LZMAError) as err:
            raise InputError(str(path), f"cannot read the WordNet asset ({err}); rebuild it with "
                             "scripts/build_wordnet_asset.py") from None
        lines = text.split("\n")
        if lines[0] != MAGIC:
            raise InputError(str(path), f"not a thresher WordNet asset (first line {lines[0][:40]!r})")
        at = 1
        lemmas, at = _section(lines, at, "L")
        synset_lines, at = _section(lines, at, "S")
        exc_lines, at = _section(lines, at, "E")
        synset_pos = [s[0] for s in synset_lines]
        flat = np.array(" ".join([s[2:] for s in synset_lines]).split(" "), dtype=np.int64)
        lengths = np.array([s.count(" ") for s in synset_lines], dtype=np.int64)
        offsets = np.r_[0, np.cumsum(lengths)].astype(np.int64)
        exceptions: dict[str, dict[str, tuple[str, ...]]] = {p: {} for p, _ in POS_FILES}
        for line in exc_lines:
            parts = line.split(" ")
            exceptions[parts[0]][parts[1]] = tuple(parts[2:])
        return cls(lemmas, synset_pos, flat, offsets, exceptions)

    def write_asset(self, path: str | Path) -> int:
        """Write the compact xz asset (deterministic bytes); returns its size."""
        out = [MAGIC, f"L {len(self.lemmas)}", *self.lemmas, f"S {self.n_synsets}"]
        flat, off = self.member_flat.tolist(), self.member_offsets.tolist()
        out += [f"{p} " + " ".join(map(str, flat[a:b])) for p, a, b in zip(self._raw_pos, off[:-1], off[1:])]
        exc = [f"{pos} {form} " + " ".join(bases) for pos, _ in POS_FILES
               for form, bases in sorted(self.exceptions[pos].items())]
        out += [f"E {len(exc)}", *exc]
        data = lzma.compress(("\n".join(out) + "\n").encode("utf-8"), preset=9 | lzma.PRESET_EXTREME)
        Path(path).write_bytes(data)
        return len(data)

    # -- queries --------------------------------------------------------------
    def __contains__(self, word: str) -> bool:
        return word.lower().replace(" ", "_") in self._key_row

    def base_forms(self, word: str) -> list[tuple[str, str]]:
        """(lemma, part of speech) pairs `word` can be an inflection of (nltk's morphy)."""
        form = word.lower().replace(" ", "_")
        return [(base, pos) for pos, _ in POS_FILES for base in self._morphy(form, pos)]

    def synsets(self, word: str) -> list[int]:
        """Synset numbers of `word` (each base form in its part of speech), in
        WordNet order, without repeats."""
        seen: dict[int, None] = {}
        for base, pos in self.base_forms(word):
            for s in self._lookup(base):
                if self.synset_pos[s] == pos:
                    seen.setdefault(s, None)
        return list(seen)

    def synonyms(self, word: str) -> tuple[str, ...]:
        """Other lemmas of the synsets of `word` (spaces for underscores; the word
        and its base forms excluded; case-insensitive repeats dropped)."""
        key = word.lower()
        hit = self._cache.get(key)
        if hit is not None:
            return hit
        skip = {key.replace("_", " "), *(b.replace("_", " ") for b, _ in self.base_forms(key))}
        out: dict[str, str] = {}
        for s in self.synsets(key):
            for lemma in self.members(s):
                name = lemma.replace("_", " ")
                low = name.lower()
                if low not in skip and low not in out:
                    out[low] = name
        result = tuple(out.values())
        self._cache[key] = result
        return result

    def _morphy(self, form: str, pos: str) -> list[str]:
        """nltk's `_morphy`: exception-list bases, else the form itself and suffix
        rewrites, repeated until something is a lemma of this part of speech."""
        exc = self.exceptions[pos].get(form)
        if exc is not None:
            return self._known([form, *exc], pos)
        rules = SUFFIX_RULES[pos]
        forms = [form[: len(form) - len(old)] + new for old, new in rules if form.endswith(old)]
        found = self._known([form, *forms], pos)
        while not found and forms:
            forms = [f[: len(f) - len(old)] + new for f in forms for old, new in rules if f.endswith(old)]
            found = self._known(forms, pos)
        return found

    def _known(self, forms: list[str], pos: str) -> list[str]:
        out: list[str] = []
        for f in forms:
            ids = self._lookup(f)
            if ids and f not in out and any(self.synset_pos[s] == pos for s in ids):
                out.append(f)
        return out


@lru_cache(maxsize=1)
def default_wordnet() -> WordNet:
    """The WordNet 3.0 synonyms shipped with thresher (loaded once per process)."""
    if not ASSET.exists():
        raise InputError(str(ASSET), "the WordNet asset is missing; run scripts/build_wordnet_asset.py")
    return WordNet.from_asset(ASSET)


def _build_index(lemmas: list[str], flat: np.ndarray, offsets: np.ndarray
                 ) -> tuple[dict[str, int], np.ndarray, np.ndarray]:
    """lower-cased lemma -> row; row r's synsets (ascending) are
    synsets[key_offsets[r]:key_offsets[r + 1]]."""
    keys = [w.lower() for w in lemmas]
    key_row = dict.fromkeys(keys)
    for row, k in enumerate(key_row):
        key_row[k] = row
    code_of_lemma = np.fromiter((key_row[k] for k in keys), dtype=np.int64, count=len(keys))
    owner = np.repeat(np.arange(len(offsets) - 1, dtype=np.int64), np.diff(offsets))
    n_syn = max(len(offsets) - 1, 1)
    pair = np.sort(code_of_lemma[flat] * n_syn + owner)  # np.unique's hash path is ~5x slower here
    pair = pair[np.r_[True, pair[1:] != pair[:-1]]] if len(pair) else pair
    codes, synsets = pair // n_syn, pair % n_syn
    key_offsets = np.searchsorted(codes, np.arange(len(key_row) + 1))
    return key_row, key_offsets, synsets


def _read_data_file(path: Path):
    """(pos, lemmas) per synset line of a Princeton data.* file."""
    with path.open("r", encoding="utf-8", errors="replace") as fh:
        for line in fh:
            if line.startswith("  "):  # license header
                continue
            parts = line.split(" ")
            pos = parts[2]
            count = int(parts[3], 16)
            words = []
            for k in range(count):
                w = parts[4 + 2 * k]
                if w.endswith(")") and "(" in w:  # adjective markers: (a), (p), (ip)
                    w = w[: w.rindex("(")]
                words.append(w)
            yield pos, words


def _read_exc_file(path: Path) -> dict[str, tuple[str, ...]]:
    if not path.exists():
        return {}
    out: dict[str, tuple[str, ...]] = {}
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        parts = line.split()
        if len(parts) >= 2:
            out[parts[0]] = tuple(parts[1:])
    return out


def _section(lines: list[str], at: int, tag: str) -> tuple[list[str], int]:
    head = lines[at].split(" ")
    if head[0] != tag or len(head) != 2 or not head[1].isdigit():
        raise InputError(str(ASSET), f"corrupt WordNet asset: expected section {tag} at line {at + 1}")
    n = int(head[1])
    return lines[at + 1 : at + 1 + n], at + 1 + n
