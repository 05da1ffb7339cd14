"""Fitting a prompt into a token budget without cutting what it means.

One rule for training, evaluation and LM scores: when a prompt is too long,
the middle of its *input* part is cut (its first and last halves are kept,
joined by a short marker), so the instruction or system text before it, the
text after it and the response's start survive. A row's input part is a
character span of its prompt (`input_spans`): the Alpaca `input`, the longest
non-system turn of a chat, or, when nothing is known, the whole prompt (then
the prompt's start, usually the instruction, and its end, usually the
question, are what is kept). Only when the parts around the input alone
exceed the budget is the whole prompt cut in the middle.
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np

MARKER = " [...] "
WHOLE = -1  # span start meaning "the whole prompt is the input part"


def input_spans(ds: Any, prompts: Sequence[str]) -> np.ndarray:
    """(n, 2) int64 character spans [start, end) of each prompt's input part
    (`WHOLE` rows: the whole prompt). Alpaca rows with an input: the input,
    which the prompt holds after the instruction and a blank line; chat rows:
    the longest non-system turn before the response."""
    spans = np.full((len(prompts), 2), WHOLE, np.int64)
    fmt = getattr(ds.source, "record_format", None)
    if fmt == "alpaca":
        _alpaca_spans(ds, prompts, spans)
    elif fmt in ("messages", "sharegpt"):
        _chat_spans(ds, prompts, spans)
    return spans


def _alpaca_spans(ds: Any, prompts: Sequence[str], spans: np.ndarray) -> None:
    fmap = dict(ds.source.field_map)
    name = fmap.get("instruction", "instruction")
    if name not in ds.table.column_names:
        return
    instructions = ds.table.column(name).to_pylist()
    for i, (ins, prompt) in enumerate(zip(instructions, prompts)):
        head = len(ins or "") + 2  # instruction + "\n\n"
        if ins is not None and len(prompt) > head and prompt.startswith(ins):
            spans[i] = (head, len(prompt))


def _chat_spans(ds: Any, prompts: Sequence[str], spans: np.ndarray) -> None:
    from thresher.data.formats import canonical_columns

    messages = canonical_columns(ds)["messages"].to_pylist()
    for i, (turns, prompt) in enumerate(zip(messages, prompts)):
        offset, best = 0, None
        for turn in turns or []:
            text = turn.get("content") or ""
            if offset + len(text) > len(prompt) or prompt[offset:offset + len(text)] != text:
                break  # past the prompt (the response turn)
            if turn.get("role") != "system" and (best is None or len(text) > best[1] - best[0]):
                best = (offset, offset + len(text))
            offset += len(text) + 2
        if best is not None and best[1] > best[0]:
            spans[i] = best


def fit_prompts(tokenizer: Any, prompts: Sequence[str], ids: list[np.ndarray], budgets: np.ndarray,
                spans: np.ndarray | None = None) -> tuple[list[np.ndarray], np.ndarray]:
    """Each prompt's token ids cut to at most `budgets[i]` tokens by the rule
    of the module docstring, and the number of tokens removed per row.
    `ids` are the prompts' full token ids; rows that fit are returned as given."""
    budgets = np.asarray(budgets, np.int64)
    lengths = np.fromiter((len(x) for x in ids), np.int64, len(ids))
    over = np.flatnonzero(lengths > budgets)
    out = list(ids)
    if over.size == 0:
        return out, np.zeros(len(ids), np.int64)
    marker = _encode(tokenizer, [MARKER])[0]
    pieces = _pieces(prompts, spans, over)
    pre, body, post = (_encode(tokenizer, texts) for texts in pieces)
    for k, i in enumerate(over):
        out[i] = _fit_one(pre[k], body[k], post[k], ids[i], marker, int(budgets[i]))
    removed = lengths - np.fromiter((len(x) for x in out), np.int64, len(out))
    return out, np.maximum(removed, 0)


def _pieces(prompts: Sequence[str], spans: np.ndarray | None, rows: np.ndarray) -> tuple[list[str], ...]:
    pre, body, post = [], [], []
    for i in rows:
        text = prompts[i]
        start, end = (WHOLE, WHOLE) if spans is None else spans[i]
        if start == WHOLE:
            start, end = 0, len(text)
        pre.append(text[:start])
        body.append(text[start:end])
        post.append(text[end:])
    return pre, body, post


def _fit_one(pre: np.ndarray, body: np.ndarray, post: np.ndarray, whole: np.ndarray, marker: np.ndarray,
             budget: int) -> np.ndarray:
    keep = budget - pre.size - post.size
    if keep >= marker.size + 2:
        return np.concatenate([pre, _middle_cut(body, keep, marker), post])
    return _middle_cut(whole, budget, marker)


def _middle_cut(ids: np.ndarray, budget: int, marker: np.ndarray) -> np.ndarray:
    """`ids` shortened to `budget` tokens: first and last halves around `marker`
    (the marker is left out when it would not fit with a token on each side)."""
    if ids.size <= budget:
        return ids
    if budget < marker.size + 2:
        marker = marker[:0]
    room = budget - marker.size
    head = (room + 1) // 2
    tail = room - head
    return np.concatenate([ids[:head], marker, ids[ids.size - tail:] if tail else ids[:0]])


def _encode(tokenizer: Any, texts: list[str]) -> list[np.ndarray]:
    nonempty = [t for t in texts if t]
    encoded = iter(tokenizer(nonempty, add_special_tokens=False)["input_ids"] if nonempty else [])
    return [np.asarray(next(encoded), np.int64) if t else np.zeros(0, np.int64) for t in texts]


def truncation_summary(removed: np.ndarray, prompt_lengths: np.ndarray | None = None) -> dict:
    """{"rows", "share", "mean_removed", "max_removed", "mean_removed_share"}
    of the rows that lost tokens (what results and manifests report)."""
    removed = np.asarray(removed, np.int64)
    cut = removed > 0
    out = {"rows": int(cut.sum()), "share": float(cut.mean()) if removed.size else 0.0,
           "mean_removed": float(removed[cut].mean()) if cut.any() else 0.0,
           "max_removed": int(removed.max()) if removed.size else 0,
           "rule": "middle of the input part cut; instruction, system text and response start kept"}
    if prompt_lengths is not None and cut.any():
        full = np.asarray(prompt_lengths, np.float64)[cut]
        out["mean_removed_share"] = float(np.mean(removed[cut] / np.maximum(full, 1)))
    return out
