"""Targeted generation for thin categories: few-shot prompt a local LM with
real rows of a category, parse ONE new example per completion, validate it
(`CandidateValidator`), keep it marked as synthetic.

The prompt is plain text (it works for base and instruct models alike)::

    Examples of "health" requests and answers. Each example is new and different.

    Instruction: <a real prompt of the category>
    Response: <its response>

    ... (`shots` real rows, drawn without replacement)

    Instruction:

and the model continues it. `parse_candidate` reads "<prompt>\\nResponse:
<response>" from the continuation; the response ends at the first blank line
(or, when the shots' own texts hold blank lines, at the next "Instruction:"
line). Anything else is rejected as ``unparseable``.

The generator is any callable `generator(prompts, seed, stop) -> continuations`
(`LMGenerator` wraps a Hugging Face causal LM), so tests can pass a fake.

This module makes the rows; writing them in the pool's own format, with a
manifest, is `thresher.balance.synthetic` (re-exported here).
"""
from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from typing import Any, Callable, Protocol, Sequence

import numpy as np

from thresher.balance.synthetic import WRITABLE_FORMATS, check_writable, synthetic_records, write_generated  # noqa: F401
from thresher.balance.validate import REASONS, CandidateValidator
from thresher.core.rng import make_rng
from thresher.errors import UsageError

log = logging.getLogger(__name__)

HEADER = 'Examples of "{category}" requests and answers. Each example is new and different.'
_PROMPT_LABELS = r"(?:instruction|question|prompt|request|input)"
_RESPONSE_LABELS = r"(?:response|answer|output|reply)"
_LABEL = r"[ \t]*[*#_]*[ \t]*{}[ \t]*[*_]*[ \t]*:[*_]*[ \t]*"
_RESPONSE_RE = re.compile(r"\n" + _LABEL.format(_RESPONSE_LABELS), re.IGNORECASE)
_NEXT_PROMPT_RE = re.compile(r"\n" + _LABEL.format(_PROMPT_LABELS), re.IGNORECASE)
_LEADING_PROMPT_RE = re.compile(r"^\s*" + _LABEL.format(_PROMPT_LABELS), re.IGNORECASE)
_BLANK_LINE_RE = re.compile(r"\n[ \t]*\n")
EXAMPLES_PER_REASON = 3


class Generator(Protocol):
    """What `generate_for_thin` calls: continuations of `prompts`, seeded."""

    def __call__(self, prompts: list[str], seed: int, stop: list[str]) -> list[str]: ...


# -- prompts and parsing ----------------------------------------------------------
def few_shot_prompt(category: str, shots: Sequence[tuple[str, str]]) -> str:
    """The few-shot prompt for one new example of `category` (see the module docstring)."""
    blocks = [f"Instruction: {p.strip()}\nResponse: {r.strip()}" for p, r in shots]
    return "\n\n".join([HEADER.format(category=category), *blocks, "Instruction:"])


def parse_candidate(continuation: str, multiline: bool = False) -> tuple[str, str] | None:
    """(prompt, response) from a continuation of `few_shot_prompt`, or None when it has no such shape."""
    text = continuation.replace("\r\n", "\n")
    text = _LEADING_PROMPT_RE.sub("", text, count=1)  # a model may repeat the label
    found = _RESPONSE_RE.search(text)
    if found is None:
        return None
    prompt, response = text[: found.start()].strip(), text[found.end():]
    later = _NEXT_PROMPT_RE.search(response)
    if later is not None:
        response = response[: later.start()]
    if not multiline:  # the first paragraph; a blank line right after the label leaves it empty
        response = _BLANK_LINE_RE.split(response.lstrip(" \t"), maxsplit=1)[0]
    response = response.strip()
    if not prompt or not response or _RESPONSE_RE.search("\n" + prompt):
        return None
    return prompt, response


def stop_strings(shots: Sequence[tuple[str, str]]) -> list[str]:
    """Where generation may stop: a blank line, unless the shots' texts hold blank lines."""
    return ["\nInstruction:"] if _multiline(shots) else ["\n\n"]


def _multiline(shots: Sequence[tuple[str, str]]) -> bool:
    return any("\n\n" in p.strip() or "\n\n" in r.strip() for p, r in shots)


# -- which categories, how many ------------------------------------------------------
def category_counts(ds, by: str) -> dict[str, int]:
    """Rows per value of field `by` (nulls as "(missing)")."""
    codes, labels = ds.categorical([by])
    sizes = np.bincount(codes, minlength=len(labels))
    return {lab: int(n) for lab, n in zip(labels, sizes.tolist())}


def plan_targets(counts: dict[str, int], below: int, per_category: int | None = None,
                 to: int | None = None) -> dict[str, int]:
    """New rows wanted per thin category (count < `below`): `per_category` each,
    or enough to reach `to` rows (default: `to = below`). "(missing)" is never a target."""
    from thresher.data.dataset import MISSING_LABEL

    _check_int("for_below", below, 1)
    if per_category is not None and to is not None:
        raise UsageError("give --per-category or --to, not both")
    _check_int("per_category", per_category, 1, allow_none=True)
    _check_int("to", to, 1, allow_none=True)
    goal = below if to is None else to
    plan = {}
    for category, n in counts.items():
        if category == MISSING_LABEL or n >= below or n == 0:
            continue
        want = per_category if per_category is not None else goal - n
        if want > 0:
            plan[category] = want
    return plan


# -- the real generator -----------------------------------------------------------
class LMGenerator:
    """Seeded, batched (left-padded) sampling from a Hugging Face causal LM.

    `temperature=0` decodes greedily. `seed` seeds torch inside each call
    only (the global torch RNG state is restored afterwards)."""

    def __init__(self, model, tokenizer, max_new_tokens: int = 128, temperature: float = 0.8,
                 top_p: float = 0.95, batch_size: int = 8, name: str = "model"):
        _check_int("max_new_tokens", max_new_tokens, 1)
        _check_int("batch_size", batch_size, 1)
        if isinstance(temperature, bool) or not isinstance(temperature, (int, float)) or temperature < 0:
            raise UsageError(f"temperature must be a number >= 0, got {temperature!r}")
        if not isinstance(top_p, (int, float)) or not 0 < top_p <= 1:
            raise UsageError(f"top_p must be in (0, 1], got {top_p!r}")
        self.model, self.tokenizer = model, tokenizer
        self.max_new_tokens, self.temperature, self.top_p = max_new_tokens, float(temperature), float(top_p)
        self.batch_size, self.name = batch_size, name

    @classmethod
    def load(cls, path: str | None = None, **params) -> "LMGenerator":
        """The bundled SmolLM2-135M-Instruct (`path=None`) or any local HF model folder."""
        from pathlib import Path

        from thresher.models import DEFAULT_LM_NAME, load_causal_lm

        model, tokenizer = load_causal_lm(path)
        name = "SmolLM2-135M-Instruct" if path is None or str(path).lower() == DEFAULT_LM_NAME \
            else Path(path).name
        return cls(model, tokenizer, name=name, **params)

    def __call__(self, prompts: list[str], seed: int, stop: list[str] | None = None) -> list[str]:
        import torch

        out: list[str] = []
        with torch.random.fork_rng(devices=[]), torch.inference_mode():
            torch.manual_seed(int(seed))
            for start in range(0, len(prompts), self.batch_size):
                out += self._batch(prompts[start:start + self.batch_size], stop)
        return out

    def _batch(self, prompts: list[str], stop: list[str] | None) -> list[str]:
        tok = self.tokenizer
        side, tok.padding_side = tok.padding_side, "left"  # generation continues at the right edge
        try:
            enc = tok(prompts, return_tensors="pt", padding=True, add_special_tokens=False)
        finally:
            tok.padding_side = side
        enc = {k: v.to(self.model.device) for k, v in enc.items()}
        sampling = {"do_sample": True, "temperature": self.temperature, "top_p": self.top_p} \
            if self.temperature > 0 else {"do_sample": False}
        kwargs = dict(max_new_tokens=self.max_new_tokens, pad_token_id=tok.pad_token_id, **sampling)
        if stop:
            kwargs.update(stop_strings=list(stop), tokenizer=tok)
        ids = self.model.generate(**enc, **kwargs)
        return tok.batch_decode(ids[:, enc["input_ids"].shape[1]:], skip_special_tokens=True)


# -- the loop ----------------------------------------------------------------------
@dataclass
class CategoryReport:
    """What happened for one category."""

    category: str
    pool_rows: int
    target: int
    attempts: int = 0
    valid: int = 0  # candidates that passed validation (kept ones plus any surplus)
    kept: int = 0
    rejected: dict[str, int] = field(default_factory=lambda: {r: 0 for r in REASONS})

    @property
    def acceptance_rate(self) -> float:
        return self.valid / self.attempts if self.attempts else float("nan")

    @property
    def reached(self) -> bool:
        return self.kept >= self.target

    def to_json(self) -> dict[str, Any]:
        rate = self.acceptance_rate
        return {"category": self.category, "pool_rows": self.pool_rows, "target": self.target,
                "attempts": self.attempts, "accepted": self.valid, "kept": self.kept,
                "acceptance_rate": None if np.isnan(rate) else round(rate, 4),
                "rejected": dict(self.rejected), "reached": self.reached}


@dataclass
class GenerationResult:
    """Kept rows (prompt, response, category) in generation order, reports and examples."""

    rows: list[dict[str, str]]
    categories: list[CategoryReport]
    generator: str
    params: dict[str, Any]
    examples: dict[str, list[dict[str, Any]]]
    diagnostics: dict[str, Any]

    def rejections(self) -> dict[str, int]:
        return {r: sum(c.rejected[r] for c in self.categories) for r in REASONS}

    def summary(self) -> dict[str, Any]:
        attempts = sum(c.attempts for c in self.categories)
        valid = sum(c.valid for c in self.categories)
        return {"generator": self.generator, "categories": [c.to_json() for c in self.categories],
                "attempts": attempts, "accepted": valid, "kept": len(self.rows),
                "acceptance_rate": round(valid / attempts, 4) if attempts else None,
                "rejected": self.rejections(),
                "not_reached": [c.category for c in self.categories if not c.reached]}


def generate_for_thin(ds, by: str, generator: Callable, *, below: int, per_category: int | None = None,
                      to: int | None = None, shots: int = 3, max_attempts: int | None = None,
                      validator: CandidateValidator | None = None, seed: int | None = 0,
                      progress: Callable[[CategoryReport], None] | None = None) -> GenerationResult:
    """Generate validated new rows for every category of `by` with fewer than `below` rows.

    Per category, candidates are drawn in batches (each with its own seeded
    choice of `shots` real rows of that category) until its target is kept or
    `max_attempts` (default 4 x target) candidates were tried.
    """
    _check_int("shots", shots, 1)
    _check_int("max_attempts", max_attempts, 1, allow_none=True)
    plan = plan_targets(category_counts(ds, by), below, per_category, to)
    validator = validator or (CandidateValidator(ds, by) if plan else None)
    rng = make_rng(seed)
    batch = int(getattr(generator, "batch_size", 8))
    name = str(getattr(generator, "name", type(generator).__name__))
    rows: list[dict[str, str]] = []
    reports: list[CategoryReport] = []
    examples: dict[str, list[dict[str, Any]]] = {"accepted": [], **{r: [] for r in REASONS}}
    for category, target in plan.items():
        report = CategoryReport(category, int(len(validator.category_rows(category))), target)
        budget = max_attempts if max_attempts is not None else 4 * target
        pairs = validator.category_pairs(category)
        while report.kept < target and report.attempts < budget:
            n = min(batch, budget - report.attempts)
            kept = _one_round(generator, validator, category, pairs, n, shots, rng, report, examples)
            rows += [{"prompt": p, "response": r, "category": category} for p, r in kept]
            if progress is not None:
                progress(report)
        if not report.reached:
            log.warning("%s: kept %d of %d after %d attempts", category, report.kept, target, report.attempts)
        reports.append(report)
    params = {"by": by, "for_below": below, "per_category": per_category, "to": to, "shots": shots,
              "max_attempts": max_attempts, "validator": validator.params() if validator else None,
              "generator": _generator_params(generator)}
    diagnostics = {"centroid_agreement": {c: round(validator.centroid_agreement[c], 4) for c in plan},
                   "waived_quality_clauses": {c: validator.waived(c) for c in plan}} if validator else {}
    return GenerationResult(rows, reports, name, params, examples, diagnostics)


def _one_round(generator, validator: CandidateValidator, category: str, pairs: list[tuple[str, str]], n: int,
               shots: int, rng: np.random.Generator, report: CategoryReport, examples) -> list[tuple[str, str]]:
    """Generate, parse and validate `n` candidates; the ones kept (up to the target), in order."""
    chosen = [[pairs[i] for i in rng.choice(len(pairs), size=min(shots, len(pairs)), replace=False)]
              for _ in range(n)]
    prompts = [few_shot_prompt(category, s) for s in chosen]
    stop = stop_strings([p for s in chosen for p in s])
    outputs = list(generator(prompts, int(rng.integers(2**31 - 1)), stop))
    if len(outputs) != n:
        raise UsageError(f"the generator returned {len(outputs)} texts for {n} prompts")
    parsed = [parse_candidate(o, _multiline(s)) for o, s in zip(outputs, chosen)]
    ok = [i for i, p in enumerate(parsed) if p is not None]
    verdicts = validator.validate(category, [parsed[i][0] for i in ok], [parsed[i][1] for i in ok], commit=False)
    by_index = dict(zip(ok, verdicts))
    kept = []
    for i, raw in enumerate(outputs):
        report.attempts += 1
        verdict = by_index.get(i)
        if verdict is None:
            _reject(report, examples, "unparseable", category, raw, None, None)
        elif not verdict.accepted:
            _reject(report, examples, verdict.reason, category, raw, parsed[i], verdict.detail)
        else:
            report.valid += 1
            if report.kept < report.target:
                report.kept += 1
                kept.append(parsed[i])
                _example(examples, "accepted", category, parsed[i], None, None)
    validator.remember([p for p, _ in kept], [r for _, r in kept])  # surplus valid ones stay unknown
    return kept


def _reject(report, examples, reason: str, category: str, raw: str, pair, detail) -> None:
    report.rejected[reason] += 1
    _example(examples, reason, category, pair, raw if pair is None else None, detail)


def _example(examples, key: str, category: str, pair, raw: str | None, detail: str | None) -> None:
    if len(examples[key]) >= EXAMPLES_PER_REASON:
        return
    item: dict[str, Any] = {"category": category}
    if pair is not None:
        item.update(prompt=pair[0], response=pair[1])
    if raw is not None:
        item["raw"] = raw[:300]
    if detail:
        item["detail"] = detail
    examples[key].append(item)


def _generator_params(generator) -> dict[str, Any]:
    keys = ("name", "max_new_tokens", "temperature", "top_p", "batch_size")
    return {k: getattr(generator, k) for k in keys if hasattr(generator, k)}


def _check_int(name: str, value, low: int, allow_none: bool = False) -> None:
    if value is None and allow_none:
        return
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
        raise UsageError(f"{name} must be an integer >= {low}, got {value!r}")
