"""EDA: termination, exact counts, determinism, protected spans, and what each op does."""
import time
from collections import Counter

import numpy as np
import pytest

from tests.balance.test_wordnet import tiny_wordnet
from thresher.balance.eda import (EDA, Draws, check_alpha, check_ops, delete_words, n_changes, protected_spans,
                                  render, tokenize)
from thresher.errors import UsageError

DEGENERATE = ["hello hello hello", "hello", "Hello", "", "   ", "12345", "3.14 2,000 42%", "!!! ?? ...",
              "`x = 1`", "```\nprint('hi')\n```", "https://example.com/a?b=c", "Yes", "yes yes",
              "a", "the the the", "Ünïcödé wörds", "x" * 500, "hello\n\n\n", "42 hello"]


@pytest.mark.parametrize("text", DEGENERATE)
@pytest.mark.parametrize("ops", [("sr", "ri", "rs", "rd"), ("rs",), ("rd",), ("sr",), ("rs", "rd")])
def test_degenerate_inputs_terminate_with_exact_count_or_reason(text, ops):
    eda = EDA(ops=ops, n_aug=5, protect=["yes"])
    start = time.perf_counter()
    v = eda.augment(text, seed=3)
    assert time.perf_counter() - start < 5
    outs = [t[0] for t in v.texts]
    assert len(set(outs)) == len(outs) and text not in outs
    assert len(outs) == len(v.ops)
    if v.reason is None:
        assert len(outs) == 5
    else:
        assert len(outs) < 5 and v.reason


def test_hello_hello_hello_does_not_loop_and_gives_all_asked():
    # TextAttack's EDA loops forever here (PR #477) and returns fewer than asked (#800).
    v = EDA(n_aug=8).augment("hello hello hello", seed=0)
    assert v.reason is None and len({t[0] for t in v.texts}) == 8


def test_reason_states_how_many_variants_exist():
    v = EDA(ops=["rs", "rd"], n_aug=4).augment("hello world", seed=0)
    assert sorted(t[0] for t in v.texts) == ["hello", "world", "world hello"]
    assert v.reason.startswith("only 3 distinct variants exist")
    v = EDA(ops=["rs", "rd"], n_aug=4).augment("hello", seed=0)
    assert v.texts == [] and "no operation applies" in v.reason
    v = EDA(n_aug=2).augment("2024 `code` https://x.org", seed=0)
    assert v.texts == [] and "no editable words" in v.reason


def test_enumeration_tops_up_when_random_tries_run_out():
    # With one random try, the rest must come from enumerating the support.
    v = EDA(ops=["rd"], n_aug=3, max_tries=1).augment("alpha beta gamma delta", seed=1)
    assert v.reason is None and len({t[0] for t in v.texts}) == 3


def test_exact_count_over_many_sentences():
    rng = np.random.default_rng(0)
    vocab = "the quick brown fox jumps over lazy dog happy big car walk run bank river light".split()
    eda = EDA(n_aug=6)
    for i in range(200):
        words = rng.choice(vocab, size=rng.integers(3, 15)).tolist()
        text = " ".join(words).capitalize() + "."
        v = eda.augment(text, seed=i)
        outs = [t[0] for t in v.texts]
        assert len(set(outs)) == len(outs) and text not in outs
        assert len(outs) == 6 or v.reason


def test_deterministic_per_seed_and_key():
    eda = EDA(n_aug=4)
    text = "The quick brown fox jumps over the lazy dog near the river bank."
    a = eda.augment(text, seed=7, key="row-1")
    b = EDA(n_aug=4).augment(text, seed=7, key="row-1")
    assert a.texts == b.texts and a.ops == b.ops
    assert eda.augment(text, seed=8, key="row-1").texts != a.texts
    assert eda.augment(text, seed=7, key="row-2").texts != a.texts
    # Nothing carried over between calls: augmenting another text first changes nothing.
    eda.augment("something else entirely here", seed=7, key="x")
    assert eda.augment(text, seed=7, key="row-1").texts == a.texts


def _random_protected_text(rng, labels):
    pieces = ["alpha", "beta", "quick", "happy", "dog", "car", "run", "walk", "big", "river", "light", "Bank"]
    spans = ["42", "3.14", "1,000", "`x = y + 1`", "https://example.com/path?q=1", "user@example.org",
             "<b>", "{name}", "v2", "```\ncode block here\n```"] + labels
    out = []
    for _ in range(rng.integers(4, 20)):
        pool = spans if rng.random() < 0.3 else pieces
        out.append(pool[rng.integers(len(pool))])
    return " ".join(out) + rng.choice([".", "?", "!", ""])


def test_protected_spans_are_never_edited():
    rng = np.random.default_rng(1)
    labels = ["Yes.", "No", "born_first"]
    eda = EDA(n_aug=4, alpha=0.3, protect=labels[:2])
    for i in range(300):
        text = _random_protected_text(rng, labels)
        v = eda.augment(text, seed=i, label="born_first")
        spans = protected_spans(text, labels)
        for (out,) in v.texts:
            for span in set(spans):
                assert out.count(span) >= text.count(span), (text, out, span)
            # The protected spans keep their order too (nothing moves them).
            at = 0
            for span in spans:
                at = out.find(span, at)
                assert at >= 0, (text, out, span)
                at += len(span)


def test_tokenize_keeps_text_and_isolates_words():
    text = "Hello, world! It's 3pm; see `code` and https://x.com/a?b=1.\n\nNext."
    seps, words = tokenize(text)
    assert render(seps, words) == text
    assert words == ["Hello", "world", "It's", "see", "and", "Next"]
    assert "`code`" in protected_spans(text) and "https://x.com/a?b=1." in protected_spans(text)


def test_n_changes_rounds_half_up_with_a_floor_of_one():
    assert n_changes(0.1, 3) == 1 and n_changes(0.1, 15) == 2 and n_changes(0.1, 25) == 3
    assert n_changes(0.5, 5) == 3 and n_changes(1.0, 4) == 4


def test_rd_deletes_alpha_fraction_uniformly():
    words = [f"w{c}" for c in "abcdefghij"]  # letters only after 'w'? digits protect; use letters
    words = ["alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel", "india", "juliet"]
    text = " ".join(words)
    eda = EDA(ops=["rd"], alpha=0.2, n_aug=1)
    counts = Counter()
    draws = 2000
    for i in range(draws):
        (out,), = eda.augment(text, seed=i).texts
        kept = out.split(" ")
        assert len(kept) == 8 and kept == [w for w in words if w in kept]  # order kept
        counts.update(set(words) - set(kept))
    # Each word is deleted with probability k/n = 0.2: Binomial(2000, 0.2), sd ~ 17.9.
    for w in words:
        assert abs(counts[w] - 400) < 5 * 17.9, counts


def test_rd_fraction_over_long_texts():
    rng = np.random.default_rng(2)
    vocab = ["alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel"]
    fractions = []
    for i in range(300):
        n = int(rng.integers(40, 120))
        text = " ".join(rng.choice(vocab, size=n))
        (out,), = EDA(ops=["rd"], alpha=0.15, n_aug=1).augment(text, seed=i).texts
        fractions.append(1 - len(out.split()) / n)
    # Rounding moves each fraction by at most 0.5/40; the mean sits within that of alpha.
    assert abs(np.mean(fractions) - 0.15) < 0.5 / 40


def test_delete_words_keeps_punctuation_and_protected_text():
    seps, words = tokenize("Hello, big world 42 today.")
    assert render(*delete_words(seps, words, {1})) == "Hello, world 42 today."
    assert render(*delete_words(seps, words, {0})) == ", big world 42 today."
    assert render(*delete_words(seps, words, {3})) == "Hello, big world 42."
    assert render(*delete_words(seps, words, {2})) == "Hello, big 42 today."
    seps, words = tokenize("It was nice, 3 km. Good (very) work")
    assert render(*delete_words(seps, words, {2})) == "It was, 3 km. Good (very) work"
    assert render(*delete_words(seps, words, {5})) == "It was nice, 3 km. Good () work"


def test_rs_preserves_the_multiset_of_words():
    text = "alpha bravo charlie delta echo foxtrot golf hotel india juliet, 7 kilo."
    src_seps, src_words = tokenize(text)
    eda = EDA(ops=["rs"], alpha=0.3, n_aug=5)
    for i in range(100):
        for (out,) in eda.augment(text, seed=i).texts:
            seps, words = tokenize(out)
            assert sorted(words) == sorted(src_words) and words != src_words
            assert seps == src_seps  # separators (and the protected 7) stay in place


def test_sr_replaces_with_wordnet_synonyms(tmp_path):
    wn = tiny_wordnet(tmp_path)
    text = "the dog and the cat saw a car and a big goose"
    _, src = tokenize(text)
    eda = EDA(ops=["sr"], alpha=0.3, n_aug=3, wordnet=wn)
    changed_total = 0
    for i in range(50):
        for (out,) in eda.augment(text, seed=i).texts:
            # Synonyms may be several words: compare via the tiny WordNet's single-word lemmas.
            out_words = out.split(" ")
            assert len(out_words) >= len(src)
            aligned = out.replace("domestic dog", "domestic_dog").replace("true cat", "true_cat").split(" ")
            assert len(aligned) == len(src)
            for a, b in zip(src, aligned):
                if a != b:
                    changed_total += 1
                    assert b.replace("_", " ") in wn.synonyms(a), (a, b)
            assert sum(a != b for a, b in zip(src, aligned)) == n_changes(0.3, len(src))
    assert changed_total > 0


def test_ri_inserts_synonyms_and_keeps_source_words_in_order(tmp_path):
    wn = tiny_wordnet(tmp_path)
    text = "my dog likes a big car"
    _, src = tokenize(text)
    allowed = {s for w in src for s in wn.synonyms(w) if w not in ("my", "a")}
    eda = EDA(ops=["ri"], alpha=0.34, n_aug=4, wordnet=wn)
    for i in range(50):
        for (out,) in eda.augment(text, seed=i).texts:
            spaced = out
            for s in sorted(allowed, key=len, reverse=True):
                spaced = spaced.replace(s, s.replace(" ", "_"))
            words = spaced.split(" ")
            assert len(words) == len(src) + n_changes(0.34, len(src))
            it = iter(words)
            assert all(w in it for w in src)  # source words form a subsequence
            extra = Counter(words) - Counter(src)
            assert all(w.replace("_", " ") in allowed for w in extra.elements())


def test_case_is_matched_on_replacement(tmp_path):
    wn = tiny_wordnet(tmp_path)
    outs = {t[0] for i in range(20) for t in EDA(ops=["sr"], n_aug=1, wordnet=wn).augment("Car", seed=i).texts}
    assert outs <= {"Auto", "Automobile"} and outs
    outs = {t[0] for i in range(20) for t in EDA(ops=["sr"], n_aug=1, wordnet=wn).augment("CAR", seed=i).texts}
    assert outs <= {"AUTO", "AUTOMOBILE"}


def test_validation():
    with pytest.raises(UsageError, match="unknown operation"):
        check_ops("sr,xx")
    with pytest.raises(UsageError, match="unknown operation"):
        check_ops("")
    assert check_ops("rd, sr,rd") == ["rd", "sr"]
    assert check_alpha("sr=0.2,rd=0.3", ["sr", "rd"])["rd"] == 0.3
    assert check_alpha(0.25, ["sr"])["ri"] == 0.25
    for bad in ("0", "1.5", "-0.1", "sr=abc", "zz=0.1", "many"):
        with pytest.raises(UsageError):
            check_alpha(bad, ["sr"])
    for n in (0, -1, 1.5, True):
        with pytest.raises(UsageError):
            EDA(n_aug=n)


def test_draws_are_uniform():
    d = Draws(0, "k")
    counts = np.bincount([d.below(5) for _ in range(20000)], minlength=5)
    assert np.all(np.abs(counts - 4000) < 5 * np.sqrt(20000 * 0.2 * 0.8))
    sample = d.sample(10, 4)
    assert len(set(sample)) == 4 and all(0 <= s < 10 for s in sample)
    u = np.array([Draws(1, f"row{i}").random() for i in range(5000)])  # first draw across keys
    assert abs(u.mean() - 0.5) < 5 * np.sqrt(1 / 12 / 5000)
    assert Draws(1, "a").random() == Draws(1, "a").random() != Draws(2, "a").random()
