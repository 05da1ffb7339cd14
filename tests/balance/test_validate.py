"""CandidateValidator: each rejection reason on planted candidates, and a genuinely new one kept."""
from __future__ import annotations

import pytest

from thresher.balance.validate import DEFAULT_QUALITY_RULE, CandidateValidator, Verdict, quality_features
from thresher.data.dataset import Dataset
from thresher.errors import UsageError

GREETINGS = [
    ("Hello there!", "Hi! How are you doing today?"),
    ("Good morning.", "Good morning to you too, I hope you slept well."),
    ("Hi, how is it going?", "It is going great, thanks for asking."),
    ("Hey, nice to see you.", "Nice to see you too, my friend."),
    ("Good evening!", "Good evening! How was your day?"),
    ("Hello, how are you?", "I am fine, thank you. And you?"),
]
MATH = [
    ("What is 12 plus 7?", "12 plus 7 equals 19."),
    ("Compute 45 minus 18.", "45 minus 18 equals 27."),
    ("What is 6 times 8?", "6 times 8 equals 48."),
    ("Divide 81 by 9.", "81 divided by 9 equals 9."),
    ("What is the square root of 144?", "The square root of 144 is 12."),
    ("Add 250 and 375.", "250 plus 375 equals 625."),
]
LONG = ("Please describe in a few sentences how a friendly greeting at the start of a conversation "
        "helps people feel welcome and makes the rest of the talk easier for everyone involved in it?",
        "A warm hello signals that you are glad to see the other person and sets a relaxed tone for the "
        "whole conversation that follows, so both sides speak more openly and with less worry.")


@pytest.fixture(scope="module")
def pool() -> Dataset:
    rows = [{"instruction": p, "input": "", "output": r, "category": "greetings"} for p, r in GREETINGS + [LONG]]
    rows += [{"instruction": p, "input": "", "output": r, "category": "math"} for p, r in MATH]
    return Dataset.from_records(rows)


@pytest.fixture()
def validator(pool) -> CandidateValidator:
    return CandidateValidator(pool, "category")


def reasons(verdicts: list[Verdict]) -> list[str | None]:
    return [v.reason for v in verdicts]


def test_genuinely_new_on_category_example_is_accepted(validator):
    verdicts = validator.validate("greetings", ["Good afternoon, how have you been?"],
                                  ["Good afternoon! I have been well, thanks for asking."])
    assert verdicts == [Verdict(True)]
    math = validator.validate("math", ["What is 9 times 7?"], ["9 times 7 equals 63."])
    assert math[0].accepted


def test_exact_duplicate_of_the_pool_even_with_other_case_and_punctuation(validator):
    verdicts = validator.validate("greetings", ["hello THERE", "Hello there!!"], ["Hi, a different answer.", "Hey."])
    assert reasons(verdicts) == ["exact_duplicate", "exact_duplicate"]


def test_near_duplicate_with_one_word_changed(validator):
    prompt = LONG[0].replace("friendly", "kind")
    verdicts = validator.validate("greetings", [prompt], [LONG[1]])
    assert reasons(verdicts) == ["near_duplicate"]
    assert "pool row" in verdicts[0].detail
    # the same topic in other words is no duplicate
    other = validator.validate("greetings", ["Why does saying hello first make a conversation friendlier?"],
                               ["Because a greeting shows goodwill, people relax and talk more openly."])
    assert other[0].accepted


def test_duplicates_among_candidates_of_one_call_and_across_calls(validator):
    fresh = ("Good afternoon, how have you been lately my dear old friend from school?",
             "Good afternoon! I have been well, thanks for asking, and it is lovely to hear from you.")
    near = (fresh[0].replace("lately", "recently"), fresh[1])
    verdicts = validator.validate("greetings", [fresh[0], fresh[0], near[0]], [fresh[1], "Hello again.", near[1]])
    assert reasons(verdicts) == [None, "exact_duplicate", "near_duplicate"]
    assert [v.accepted for v in verdicts] == [True, False, False]
    # the accepted one is remembered: offering it again is a duplicate
    again = validator.validate("greetings", [fresh[0]], [fresh[1]])
    assert reasons(again) == ["exact_duplicate"]
    one_word = validator.validate("greetings", [fresh[0].replace("school", "college")], [fresh[1]])
    assert reasons(one_word) == ["near_duplicate"]
    assert one_word[0].detail == "an accepted candidate"


def test_commit_false_only_judges(validator):
    cand = (["Good afternoon, friend!"], ["Good afternoon! Lovely to see you."])
    assert validator.validate("greetings", *cand, commit=False)[0].accepted
    assert validator.validate("greetings", *cand, commit=False)[0].accepted
    assert validator.validate("greetings", *cand)[0].accepted
    assert not validator.validate("greetings", *cand)[0].accepted


def test_empty_and_low_quality_text_is_rejected(validator):
    verdicts = validator.validate(
        "greetings",
        ["", "Hi again, how are things?", "Hello, good day to you.", "?!?! ... !!! ???", "Hey, good to see you!",
         "Morning, friend!"],
        ["Hello!", "   ", "hello hello hello hello hello hello hello hello hello hello hello hello.",
         "Hi.", "!!! ??? ... ,,, ;;; !!!", "Good morning to you, and I was just about to say that the weather is"])
    assert reasons(verdicts) == ["empty", "empty", "low_quality", "low_quality", "low_quality", "low_quality"]
    assert "rep_ngram_ratio" in verdicts[2].detail
    assert "prompt_non_alnum_ratio" in verdicts[3].detail
    assert "non_alnum_ratio" in verdicts[4].detail
    assert "truncated_response" in verdicts[5].detail
    echoes = validator.validate("greetings", ["Good day!", "I am going to the park with my friends today."],
                                ["good day", "I am going to the park with my friends today, yes."])
    assert [v.detail for v in echoes] == ["fails not echo", "fails copy_overlap < 0.8"]


def test_off_category_text_is_rejected(validator):
    verdicts = validator.validate("greetings", ["What is 14 plus 23?", "Hi! How are you today?"],
                                  ["14 plus 23 equals 37.", "I am great, thanks! Nice to see you."])
    assert reasons(verdicts) == ["off_category", None]
    assert "'math'" in verdicts[0].detail
    # and the other way round
    assert reasons(validator.validate("math", ["Good evening, my friend!"], ["Good evening! How was your day?"])) \
        == ["off_category"]


def test_centroid_agreement_and_waived_clauses(pool):
    v = CandidateValidator(pool, "category")
    assert v.centroid_agreement == {"greetings": 1.0, "math": 1.0}
    assert v.waived("greetings") == []
    # a category whose own rows are mostly punctuation does not have that clause held against it
    rows = [{"instruction": f"Does ^[a-z]{{{i}}}$ match 'ab{i}'?", "input": "", "output": "Yes.", "category": "regex"}
            for i in range(6)]
    rows += [{"instruction": p, "input": "", "output": r, "category": "greetings"} for p, r in GREETINGS]
    rx = CandidateValidator(Dataset.from_records(rows), "category",
                            quality_where="prompt_non_alnum_ratio < 0.2 and not empty_response")
    assert rx.waived("regex") == ["prompt_non_alnum_ratio < 0.2"]
    assert rx.waived("greetings") == []
    assert rx.validate("regex", ["Does ^[0-9]{3}$ match '123'?"], ["Yes."])[0].accepted
    assert rx.validate("greetings", ["Hi!!! :) ;) <3"], ["Hello!"])[0].reason == "low_quality"


def test_quality_features_cover_both_sides():
    import pyarrow as pa

    f = quality_features(pa.array(["a b c a b c", "x"]), pa.array(["fine answer here", "!!!"]))
    assert f["prompt_rep_ngram_ratio"][0] == pytest.approx(0.5)
    assert f["rep_ngram_ratio"][0] == 0.0
    assert f["non_alnum_ratio"][1] == 1.0
    assert list(f["response_words"]) == [3, 1]
    for clause in DEFAULT_QUALITY_RULE.replace("not ", "").split(" and "):
        assert clause.split()[0] in f


def test_bad_arguments(pool, validator):
    with pytest.raises(UsageError, match="no field 'topic'"):
        CandidateValidator(pool, "topic")
    with pytest.raises(UsageError, match="near_threshold"):
        CandidateValidator(pool, "category", near_threshold=1.5)
    with pytest.raises(UsageError, match="unknown feature 'nonsense'"):
        CandidateValidator(pool, "category", quality_where="nonsense < 1").validate("math", ["a b"], ["c d"])
    with pytest.raises(UsageError, match="no category 'sports'"):
        validator.validate("sports", ["x"], ["y"])
    with pytest.raises(UsageError, match="pair up"):
        validator.validate("math", ["x"], [])
    assert validator.validate("math", [], []) == []


def test_remember_adds_known_candidates(validator):
    cand = (["Good afternoon, dear neighbour!"], ["Good afternoon! How is the garden?"])
    assert validator.validate("greetings", *cand, commit=False)[0].accepted
    validator.remember(*cand)
    assert validator.validate("greetings", *cand, commit=False)[0].reason == "exact_duplicate"
