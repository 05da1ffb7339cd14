"""Scoring held-out rows in one pass: response loss and label log-likelihoods.

A label row (its response is one of its task's labels) costs one forward pass
over its prompt, however many labels it has: the prompt runs once with a
key/value cache, and every candidate label (its tokens and the template's
end-of-turn tokens) is scored from that cache. The true label's NLL is the
row's response loss, so loss, accuracy and F1 come from the same pass. Other
rows (free text) are scored by the plain batched loss.

The prompt is fitted with the same rule as training (`split_room` with the
longest candidate as the response, then `fit_prompts`), so every candidate
sees the same prompt tokens.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from thresher.errors import UsageError
from thresher.train.examples import Examples, encode, encode_prompts, prompt_room, split_room, template_parts
from thresher.train.loss import pad_id_of, row_nll


@dataclass
class RowScores:
    """Per held-out row: NLL sum and count of the learned tokens, and for label
    rows the predicted and true label (None elsewhere) and the normalized
    log-probability of every candidate (`logprobs[i]`: {label: log p})."""

    nll: np.ndarray
    tokens: np.ndarray
    pred: list[str | None]
    truth: list[str | None]
    logprobs: list[dict[str, float] | None]
    truncated: dict

    @property
    def label_rows(self) -> np.ndarray:
        return np.flatnonzero([t is not None for t in self.truth])


def detect_label_set(responses: Sequence[str], max_labels: int = 10, min_coverage: float = 0.95,
                     max_chars: int = 40, max_words: int = 5) -> list[str] | None:
    """The sorted label set when the responses look like classification labels:
    at most `max_labels` short answers (each seen at least twice, at most
    `max_words` words / `max_chars` characters) covering `min_coverage` of the
    rows, and at least two of them. None for free text."""
    values = [("" if r is None else str(r)).strip() for r in responses]
    if len(values) < 4:
        return None
    top = [(v, c) for v, c in Counter(values).most_common(max_labels) if c >= 2 and v]
    top = [(v, c) for v, c in top if len(v) <= max_chars and len(v.split()) <= max_words]
    if len(top) < 2 or sum(c for _, c in top) < min_coverage * len(values):
        return None
    return sorted(v for v, _ in top)


def row_label_sets(examples: Examples, label_set: Sequence[str] | str | None = "auto") -> list[list[str] | None]:
    """Each row's candidate labels. A given `label_set` applies to every row;
    "auto" detects one per task (`examples.tasks`) when every task has its own
    label-like answers, else one for all rows; rows whose answer is not a
    label of their set get None (they are free text)."""
    n = len(examples)
    truth = [r.strip() for r in examples.responses]
    if label_set is None:
        return [None] * n
    if label_set != "auto":
        labels = [str(x) for x in label_set]
        if len(labels) < 2 or len(set(labels)) != len(labels):
            raise UsageError(f"label_set needs at least two distinct labels, got {labels}")
        return [labels if t in labels else None for t in truth]
    sets = _per_task_sets(examples, truth) if examples.tasks is not None else None
    if sets is None:
        found = detect_label_set(examples.responses)
        sets = {None: found} if found else {}
        keys = [None] * n
    else:
        keys = examples.tasks
    return [sets.get(k) if sets.get(k) and t in sets[k] else None for k, t in zip(keys, truth)]


def _per_task_sets(examples: Examples, truth: list[str]) -> dict | None:
    by_task: dict[str, list[str]] = {}
    for task, answer in zip(examples.tasks, truth):
        by_task.setdefault(task, []).append(answer)
    if any(len(set(answers)) < 2 for answers in by_task.values()):
        return None  # the task field is the label itself (one answer per task)
    return {task: detect_label_set(answers) for task, answers in by_task.items()}


def score_rows(model: Any, tokenizer: Any, examples: Examples, row_labels: list[list[str] | None],
               template: str | None = None, max_length: int = 256, batch_size: int = 16,
               dtype: str = "auto") -> RowScores:
    """`RowScores` of `examples` (see the module docstring)."""
    n = len(examples)
    truth = [r.strip() for r in examples.responses]
    is_label = np.array([labs is not None and t in labs for t, labs in zip(truth, row_labels)], bool)
    nll, tokens = np.zeros(n), np.zeros(n, np.int64)
    pred: list[str | None] = [None] * n
    logprobs: list[dict[str, float] | None] = [None] * n
    removed = np.zeros(n, np.int64)
    free = np.flatnonzero(~is_label)
    if free.size:
        enc = encode(tokenizer, examples.take(free), template, max_length)
        nll[free], tokens[free] = row_nll(model, enc, pad_id_of(tokenizer), batch_size, dtype)
        removed[free] = enc.removed
    rows = np.flatnonzero(is_label)
    if rows.size:
        scorer = _LabelScorer(model, tokenizer, template, max_length, dtype)
        sub = examples.take(rows)
        out = scorer.run(sub, [row_labels[i] for i in rows], batch_size)
        for k, i in enumerate(rows):
            cand = row_labels[i]
            lp = out.scores[k] - _logsumexp(out.scores[k])
            logprobs[i] = dict(zip(cand, lp.tolist()))
            pred[i] = cand[int(np.argmax(lp))]
            t = cand.index(truth[i])
            nll[i], tokens[i] = -out.scores[k][t], out.lengths[k][t]
        removed[rows] = out.removed
    from thresher.features.truncation import truncation_summary

    return RowScores(nll, tokens, pred, [truth[i] if is_label[i] else None for i in range(n)], logprobs,
                     truncation_summary(removed))


def _logsumexp(x: np.ndarray) -> float:
    m = float(np.max(x))
    return m + float(np.log(np.exp(x - m).sum()))


@dataclass
class _LabelOutput:
    scores: list[np.ndarray]  # per row: unnormalized log P(candidate + end | prompt)
    lengths: list[np.ndarray]  # per row: tokens scored per candidate
    removed: np.ndarray


class _LabelScorer:
    """One cached prompt pass per row, then every candidate from the cache."""

    def __init__(self, model: Any, tokenizer: Any, template: str | None, max_length: int, dtype: str):
        from thresher.models import resolve_dtype
        self.model, self.tokenizer = model, tokenizer
        self.parts = template_parts(tokenizer, template)
        self.room = prompt_room(self.parts, max_length)
        self.pad = pad_id_of(tokenizer)
        self.device = next(model.parameters()).device
        self.bf16 = resolve_dtype(dtype, self.device.type) == "bfloat16"
        self._label_ids: dict[str, np.ndarray] = {}

    def continuation(self, label: str) -> np.ndarray:
        if label not in self._label_ids:
            ids = self.tokenizer(label, add_special_tokens=False)["input_ids"]
            self._label_ids[label] = np.asarray([*ids, *self.parts.end], np.int64)
        return self._label_ids[label]

    def run(self, examples: Examples, candidates: list[list[str]], batch_size: int) -> _LabelOutput:
        conts = [[self.continuation(c) for c in cand] for cand in candidates]
        longest = np.array([max(c.size for c in cs) - len(self.parts.end) for cs in conts], np.int64)
        from thresher.features.truncation import fit_prompts

        full, p_len, _ = encode_prompts(self.tokenizer, examples)
        keep_p, _ = split_room(self.room, p_len, longest)
        prompts, removed = fit_prompts(self.tokenizer, examples.prompts, full, keep_p, examples.spans)
        head, mid = np.asarray(self.parts.head, np.int64), np.asarray(self.parts.mid, np.int64)
        prefixes = [np.concatenate([head, p, mid]) for p in prompts]
        scores: list[np.ndarray] = [None] * len(examples)  # type: ignore[list-item]
        order = np.argsort([p.size for p in prefixes], kind="stable")
        for start in range(0, order.size, batch_size):
            rows = order[start:start + batch_size]
            got = self._batch([prefixes[i] for i in rows], [conts[i] for i in rows])
            for i, s in zip(rows, got):
                scores[i] = s
        lengths = [np.array([c.size for c in cs]) for cs in conts]
        return _LabelOutput(scores, lengths, removed)

    def _batch(self, prefixes: list[np.ndarray], conts: list[list[np.ndarray]]) -> list[np.ndarray]:
        import torch

        b, width = len(prefixes), max(p.size for p in prefixes)
        ids = np.full((b, width), self.pad, np.int64)
        mask = np.zeros((b, width), np.int64)
        for k, p in enumerate(prefixes):  # left padding: every prompt ends at the last column
            ids[k, width - p.size:], mask[k, width - p.size:] = p, 1
        real = mask.sum(axis=1)
        counts = np.array([len(cs) for cs in conts])
        rep = np.repeat(np.arange(b), counts)
        flat = [c for cs in conts for c in cs]
        m = max(c.size for c in flat)
        t = lambda a: torch.from_numpy(np.ascontiguousarray(a)).to(self.device)  # noqa: E731
        with torch.no_grad(), torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.bf16):
            out = self.model(input_ids=t(ids), attention_mask=t(mask), position_ids=t(np.maximum(mask.cumsum(1) - 1, 0)),
                             use_cache=True, logits_to_keep=1)
            first = torch.log_softmax(out.logits[:, -1].float(), dim=-1)
            firsts = np.array([c[0] for c in flat])
            total = first[t(rep), t(firsts)].double().cpu().numpy()
            if m > 1:
                total += self._rest(_cache_of(out), mask, real, rep, flat, m)
        split = np.cumsum(counts)[:-1]
        return np.split(total, split)

    def _rest(self, cache: Any, mask: np.ndarray, real: np.ndarray, rep: np.ndarray, flat: list[np.ndarray],
              m: int) -> np.ndarray:
        """Log-probability of every continuation token after the first, from the cache."""
        import torch

        k = len(flat)
        inputs = np.full((k, m - 1), self.pad, np.int64)
        targets = np.zeros((k, m - 1), np.int64)
        valid = np.zeros((k, m - 1), bool)
        for j, c in enumerate(flat):
            inputs[j, :c.size - 1], targets[j, :c.size - 1], valid[j, :c.size - 1] = c[:-1], c[1:], True
        t = lambda a: torch.from_numpy(np.ascontiguousarray(a)).to(self.device)  # noqa: E731
        cache.reorder_cache(t(rep))
        full_mask = np.concatenate([mask[rep], valid.astype(np.int64)], axis=1)
        positions = real[rep][:, None] + np.arange(m - 1)[None, :]
        logits = self.model(input_ids=t(inputs), attention_mask=t(full_mask), position_ids=t(positions),
                            use_cache=True, **{_cache_kwarg(self.model): cache}).logits
        lp = torch.log_softmax(logits.float(), dim=-1).gather(-1, t(targets)[..., None])[..., 0]
        return (lp.double().cpu().numpy() * valid).sum(axis=1)


def _cache_kwarg(model: Any) -> str:
    """transformers 5.2x takes `cache=`; earlier releases `past_key_values=`."""
    import inspect

    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    return "cache" if "cache" in inspect.signature(base.forward).parameters else "past_key_values"


def _cache_of(output: Any) -> Any:
    cache = getattr(output, "cache", None)
    return cache if cache is not None else output.past_key_values


__all__ = ["RowScores", "row_label_sets", "score_rows"]
