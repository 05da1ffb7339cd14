"""A rule-based instruction-type tag per row, read from the prompt.

The rules are case-insensitive regular expressions tried in order on the
first ``head_chars`` characters of the prompt (the instruction usually comes
first; a long pasted input would otherwise trigger rules by accident). The
first rule that matches gives the tag; no match gives ``other``.

==============  ==============================================================
tag             matches (abridged; see ``RULES``)
==============  ==============================================================
translate       "translate", "translation", "into/from French" (~20 languages)
code            a code fence, "python", "javascript", "sql", "code", "regex",
                "debug", "write a (...) function/class/script", "def f(", ...
math            "calculate", "solve", "equation", "integral", "probability",
                arithmetic such as "12 * 7" or "3+4"
summarize       "summarize/summarise", "summary", "tl;dr", "key points"
rewrite         "rewrite", "rephrase", "paraphrase", "proofread", "edit",
                "make it more ...", "simplify", "fix the grammar"
classification  "classify", "categorize", "which category", "sentiment",
                "positive or negative", "true or false", "odd one out", "spam"
extract         "extract", "list all ...", "identify/find all ...",
                "from the text/passage/article"
brainstorm      "brainstorm", "ideas", "suggest", "list 5 / some ...",
                "what are some", "recommend"
generate        "write", "compose", "create", "generate", "draft", "poem",
                "story", "essay", "email", "tweet", "slogan"
chat            greetings and small talk: "hi", "hello", "thanks", "how are you"
question        a "?" or a start with who/what/when/where/why/how/which/is/
                are/can/does/do/should/could/would/will/explain/describe
other           nothing above
==============  ==============================================================
"""
from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from thresher.features.base import Batch, Featurizer, check_positive_int, string_column

_LANGS = ("english|french|spanish|german|italian|portuguese|dutch|russian|chinese|japanese|korean|"
          "arabic|hindi|turkish|polish|swedish|greek|hebrew|vietnamese|indonesian|latin|mandarin")

RULES: tuple[tuple[str, str], ...] = (
    ("translate", rf"\btranslat(e|es|ed|ing|ion|or)\b|\b(into|from) ({_LANGS})\b"),
    ("code", r"```|\b(python|javascript|typescript|java|c\+\+|c#|golang|sql|html|css|bash|shell script|"
             r"regex|regular expression|source code|code|coding|programming|debug|compile|"
             r"json|api endpoint)\b|\b(write|implement|create) an? (\w+ )?(function|class|method|program|"
             r"script)\b|\bdef \w+\(|\bimport \w+|#include"),
    ("math", r"\b(calculate|compute|solve|equation|integral|derivative|arithmetic|probability|"
             r"percentage|sum of|product of|square root|simplify the expression)\b|"
             r"\d\s*[-+*/×÷^=]\s*\d"),
    ("summarize", r"\bsummar(y|ies|ize|ise|ized|ised|izing|ising|ization)\b|\btl;?dr\b|"
                  r"\b(key|main) points\b|\bin (one|a|two|a few) sentences?\b"),
    ("rewrite", r"\b(rewrite|re-write|rephrase|paraphrase|proofread|reword|edit|revise|simplify|shorten|"
                r"make (it|this|the \w+) (more|less|sound)|fix (the )?grammar|correct (the )?"
                r"(grammar|spelling|errors))\b"),
    ("classification", r"\b(classify|classification|categori[sz]e|which category|sentiment|"
                       r"positive or negative|true or false|yes or no|odd one out|spam|"
                       r"label (the|each|this))\b"),
    ("extract", r"\b(extract|list all|list every|identify (all|every)|find (all|every)|pull out)\b|"
                r"\bfrom the (text|passage|paragraph|article|sentence|document|email)\b"),
    ("brainstorm", r"\b(brainstorm|ideas|suggest|suggestions|recommend|recommendations|what are some|"
                   r"list (some|a few|several|\d+|three|four|five|six|seven|eight|nine|ten)|"
                   r"give me (some|a list|\d+|three|five|ten))\b"),
    ("generate", r"\b(write|compose|create|generate|draft|come up with|make up|invent|poem|story|"
                 r"essay|tweet|email|letter|slogan|song|lyrics|haiku|blog post|dialogue)\b"),
    ("chat", r"^\W*(hi|hello|hey|howdy|thanks|thank you|good (morning|afternoon|evening)|how are you|"
             r"how's it going|what's up|nice to meet you|bye|goodbye)\b"),
    ("question", r"\?|^\W*(who|what|when|where|why|how|which|whose|whom|is|are|was|were|can|could|does|"
                 r"do|did|should|would|will|explain|describe|tell me)\b"),
)
TAGS: tuple[str, ...] = tuple(t for t, _ in RULES) + ("other",)


class InstructionTags(Featurizer):
    """`instruction_type`: the first matching rule's tag (see the module docstring)."""

    name = "tags"
    version = "1"
    inputs = ("prompt",)
    output_columns = ("instruction_type",)

    def __init__(self, head_chars: int = 300):
        check_positive_int("head_chars", head_chars)
        self.head_chars = head_chars

    def compute(self, batch: Batch) -> dict[str, pa.Array]:
        return {"instruction_type": tag_prompts(string_column(batch, "prompt"), self.head_chars)}


def tag_prompts(prompts: pa.Array, head_chars: int = 300) -> pa.Array:
    """The tag (one of `TAGS`) of each prompt."""
    head = pc.utf8_slice_codeunits(prompts, 0, head_chars)
    codes = np.full(len(head), len(TAGS) - 1, dtype=np.int8)
    todo = np.arange(len(head))
    for code, (_, pattern) in enumerate(RULES):
        if not len(todo):
            break
        hit = pc.match_substring_regex(head.take(pa.array(todo)), pattern, ignore_case=True)
        hit = np.asarray(pc.fill_null(hit, False).to_numpy(zero_copy_only=False), dtype=bool)
        codes[todo[hit]] = code
        todo = todo[~hit]  # later rules only see rows no earlier rule claimed
    return pa.array(np.asarray(TAGS, dtype=object)[codes], pa.string())
