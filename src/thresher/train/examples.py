"""Training examples (prompt, response, weight, label) and their token encoding.

How a row becomes tokens (the same for training, loss and label scoring):

* The template is rendered once around placeholders, giving constant token
  ids *before* the prompt (head), *between* prompt and response (mid) and
  *after* the response (end). The prompt and the response are tokenized on
  their own (no special tokens) and spliced in:
  ``head + prompt + mid + response + end``.
* ``template=None``: the tokenizer's chat template (one user turn, one
  assistant turn; ``end`` is its end-of-turn text, e.g. ``<|im_end|>\\n``) if
  it has one, else ``PLAIN_TEMPLATE`` followed by EOS. A custom template is a
  string holding ``{prompt}`` and optionally ``{response}`` (without it the
  response follows the template); EOS is appended after it.
* Plain and custom templates start with BOS (EOS if there is no BOS) so the
  first prompt token has a context.
* Labels are -100 over ``head + prompt + mid`` (and padding); the response
  tokens and ``end`` are learned, so the model also learns to stop.
* Over ``max_length``, the prompt gets at most half the room the template
  leaves unless the response is shorter, and is cut by
  `thresher.features.truncation.fit_prompts` (the middle of its input part
  goes; the instruction and the text after the input stay); the response keeps
  its *first* tokens, and its end-of-turn tokens unless it was cut itself.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from thresher.errors import UsageError

PLAIN_TEMPLATE = "### Instruction:\n{prompt}\n\n### Response:\n"
IGNORE_INDEX = -100
_P = "\u2063THRESHER_PROMPT\u2063"
_R = "\u2063THRESHER_RESPONSE\u2063"


@dataclass
class Examples:
    """Rows to train or evaluate on. `weights` are per-row sample weights
    (float64) or None; `labels` a class per row (for per-class metrics and
    class weights) or None; `ids` row ids or None; `tasks` a task per row (label
    sets are scored per task) or None; `spans` (n, 2) character spans of each
    prompt's input part (see `thresher.features.truncation`) or None."""

    prompts: list[str]
    responses: list[str]
    weights: np.ndarray | None = None
    labels: list[str] | None = None
    ids: list[str] | None = None
    tasks: list[str] | None = None
    spans: np.ndarray | None = None

    def __post_init__(self) -> None:
        self.prompts = ["" if p is None else str(p) for p in self.prompts]
        self.responses = ["" if r is None else str(r) for r in self.responses]
        n = len(self.prompts)
        if len(self.responses) != n:
            raise UsageError(f"got {n} prompts but {len(self.responses)} responses; they must pair up")
        if self.weights is not None:
            self.weights = np.asarray(self.weights, dtype=np.float64).reshape(-1)
            if self.weights.size != n:
                raise UsageError(f"got {self.weights.size} weights for {n} rows")
            if not np.all(np.isfinite(self.weights)) or np.any(self.weights < 0):
                raise UsageError("sample weights must be finite and >= 0")
        if self.spans is not None:
            self.spans = np.asarray(self.spans, dtype=np.int64).reshape(n, 2)
        for name in ("labels", "ids", "tasks"):
            values = getattr(self, name)
            if values is not None:
                values = ["" if v is None else str(v) for v in values]
                if len(values) != n:
                    raise UsageError(f"got {len(values)} {name} for {n} rows")
                setattr(self, name, values)

    @classmethod
    def from_dataset(cls, ds: Any, weight_field: str | None = "auto", label_field: str | None = None,
                     task_field: str | None = None) -> "Examples":
        """Prompts/responses of any record format; weights from `weight_field`
        ("auto": the `_weight` column when present, None: no weights); labels
        from `label_field`, tasks from `task_field`; ids and input spans from
        the dataset."""
        from thresher.data.formats import canonical_columns
        from thresher.features.truncation import input_spans

        cols = canonical_columns(ds, wanted="prompt")
        names = ds.table.column_names
        weights = None
        if weight_field == "auto":
            weight_field = "_weight" if "_weight" in names else None
        if weight_field is not None:
            weights = _numeric_column(ds, weight_field)
        labels, tasks = (_string_field(ds, f, kind) for f, kind in ((label_field, "label"), (task_field, "task")))
        prompts = cols["prompt"].to_pylist()
        return cls(prompts, cols["response"].to_pylist(), weights, labels, [str(i) for i in ds.ids], tasks,
                   input_spans(ds, prompts))

    def take(self, indices: Sequence[int] | np.ndarray) -> "Examples":
        idx = np.asarray(indices, dtype=np.int64).reshape(-1)
        pick = lambda xs: None if xs is None else [xs[i] for i in idx]  # noqa: E731
        return Examples(pick(self.prompts), pick(self.responses),
                        None if self.weights is None else self.weights[idx], pick(self.labels), pick(self.ids),
                        pick(self.tasks), None if self.spans is None else self.spans[idx])

    def __len__(self) -> int:
        return len(self.prompts)


def _string_field(ds: Any, field: str | None, kind: str) -> list[str] | None:
    if field is None:
        return None
    names = ds.table.column_names
    if field not in names:
        raise UsageError(f"{ds.source.path}: no {kind} field {field!r} (fields: {', '.join(names)})")
    return ["" if v is None else str(v) for v in ds.table.column(field).to_pylist()]


def _numeric_column(ds: Any, field: str) -> np.ndarray:
    if field not in ds.table.column_names:
        raise UsageError(f"{ds.source.path}: no weight field {field!r}")
    import pyarrow as pa

    col = ds.table.column(field)
    if not (pa.types.is_integer(col.type) or pa.types.is_floating(col.type)):
        raise UsageError(f"{ds.source.path}: weight field {field!r} is {col.type}, expected numbers")
    values = col.to_numpy().astype(np.float64)
    bad = np.flatnonzero(~np.isfinite(values) | (values < 0))
    if bad.size:
        raise UsageError(f"{ds.source.path}: row {bad[0] + 1}: weight field {field!r} must be a finite number >= 0")
    return values


@dataclass
class Encoded:
    """Unpadded token ids per row, labels (-100 where no loss is taken), lengths,
    where each row's learned part starts (`prompt_lengths`), whether it was
    truncated and how many prompt + response tokens that removed (`removed`)."""

    input_ids: list[np.ndarray]
    labels: list[np.ndarray]
    lengths: np.ndarray
    prompt_lengths: np.ndarray
    truncated: np.ndarray
    removed: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.input_ids)

    def truncation(self) -> dict:
        """How many rows lost tokens to `max_length`, and how many (see `truncation_summary`)."""
        from thresher.features.truncation import truncation_summary

        removed = np.zeros(len(self), np.int64) if self.removed is None else self.removed
        return truncation_summary(removed, self.lengths + removed)


@dataclass(frozen=True)
class TemplateParts:
    head: list[int]
    mid: list[int]
    end: list[int]


def template_parts(tokenizer: Any, template: str | None = None) -> TemplateParts:
    """Token ids of the template around the prompt and the response."""
    chat = getattr(tokenizer, "chat_template", None)
    if template is None and chat:
        text = tokenizer.apply_chat_template(
            [{"role": "user", "content": _P}, {"role": "assistant", "content": _R}], tokenize=False)
        if text.count(_P) != 1 or text.count(_R) != 1 or text.index(_P) > text.index(_R):
            raise UsageError("the tokenizer's chat template does not render the messages verbatim; pass a template "
                             "string holding '{prompt}'")
        head, rest = text.split(_P)
        mid, end = rest.split(_R)
        return _ids(tokenizer, head, mid, end, start=None)
    text = PLAIN_TEMPLATE if template is None else template
    if not isinstance(text, str) or text.count("{prompt}") != 1 or text.count("{response}") > 1:
        raise UsageError(f"template must hold '{{prompt}}' once (and '{{response}}' at most once), got {template!r}")
    head, rest = text.split("{prompt}")
    mid, end = rest.split("{response}") if "{response}" in rest else (rest, "")
    if "{response}" in head:
        raise UsageError("template: '{response}' must come after '{prompt}'")
    start = tokenizer.bos_token_id if tokenizer.bos_token_id is not None else tokenizer.eos_token_id
    return _ids(tokenizer, head, mid, end, start=start, eos=tokenizer.eos_token_id)


def _ids(tokenizer: Any, head: str, mid: str, end: str, start: int | None, eos: int | None = None) -> TemplateParts:
    enc = lambda t: list(tokenizer(t, add_special_tokens=False)["input_ids"]) if t else []  # noqa: E731
    h, m, e = enc(head), enc(mid), enc(end)
    if start is not None and (not h or h[0] != start):
        h = [start, *h]
    if eos is not None:
        e = [*e, eos]
    if not h:
        raise UsageError("the template renders nothing before the prompt and the tokenizer has no BOS/EOS token")
    return TemplateParts(h, m, e)


def prompt_room(parts: TemplateParts, max_length: int) -> int:
    """Tokens left for prompt + response next to the template."""
    fixed = len(parts.head) + len(parts.mid) + len(parts.end)
    room = int(max_length) - fixed
    if room < 2:
        raise UsageError(f"max_length={max_length} leaves no room next to the {fixed}-token template")
    return room


def split_room(room: int, p_len: np.ndarray, r_len: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Tokens kept of each prompt and response: everything when it fits; else
    the prompt gets at least half the room (all of it that the response leaves)."""
    over = p_len + r_len > room
    keep_p = np.where(over, np.minimum(p_len, np.maximum(room - r_len, room // 2)), p_len)
    keep_r = np.where(over, np.minimum(r_len, room - keep_p), r_len)
    return keep_p, keep_r


def encode_prompts(tokenizer: Any, examples: Examples, budgets: np.ndarray | int | None = None
                   ) -> tuple[list[np.ndarray], np.ndarray, np.ndarray]:
    """(prompt token ids fitted to `budgets`, full prompt lengths, tokens removed)."""
    p_ids = _tokenize(tokenizer, examples.prompts)
    p_len = np.fromiter((len(x) for x in p_ids), np.int64, len(p_ids))
    if budgets is None:
        return p_ids, p_len, np.zeros(len(p_ids), np.int64)
    from thresher.features.truncation import fit_prompts

    budgets = np.broadcast_to(np.asarray(budgets, np.int64), p_len.shape)
    fitted, removed = fit_prompts(tokenizer, examples.prompts, p_ids, budgets, examples.spans)
    return fitted, p_len, removed


def encode(tokenizer: Any, examples: Examples, template: str | None = None, max_length: int = 256) -> Encoded:
    """Token ids and labels per row (see the module docstring)."""
    parts = template_parts(tokenizer, template)
    room = prompt_room(parts, max_length)
    p_full = _tokenize(tokenizer, examples.prompts)
    r_ids = _tokenize(tokenizer, examples.responses)
    p_len = np.fromiter((len(x) for x in p_full), np.int64, len(p_full))
    r_len = np.fromiter((len(x) for x in r_ids), np.int64, len(r_ids))
    keep_p, keep_r = split_room(room, p_len, r_len)
    from thresher.features.truncation import fit_prompts

    p_ids, p_removed = fit_prompts(tokenizer, examples.prompts, p_full, keep_p, examples.spans)
    head, mid = np.asarray(parts.head, np.int64), np.asarray(parts.mid, np.int64)
    end = np.asarray(parts.end, np.int64)
    input_ids, labels = [], []
    for p, r, kr in zip(p_ids, r_ids, keep_r):
        learned = np.concatenate([r[:kr], end if kr == r.size else end[:0]])
        ids = np.concatenate([head, p, mid, learned])
        lab = ids.copy()
        lab[: ids.size - learned.size] = IGNORE_INDEX
        input_ids.append(ids)
        labels.append(lab)
    lengths = np.fromiter((x.size for x in input_ids), np.int64, len(input_ids))
    kept_p = np.fromiter((x.size for x in p_ids), np.int64, len(p_ids))
    prompt_lengths = len(parts.head) + kept_p + len(parts.mid)
    removed = p_removed + (r_len - keep_r)
    return Encoded(input_ids, labels, lengths, prompt_lengths, removed > 0, removed)


def _tokenize(tokenizer: Any, texts: list[str]) -> list[np.ndarray]:
    if not texts:
        return []
    ids = tokenizer(list(texts), add_special_tokens=False)["input_ids"]
    return [np.asarray(x, dtype=np.int64) for x in ids]


def pad_batch(encoded: Encoded, rows: np.ndarray, pad_id: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Right-padded (input_ids, attention_mask, labels) int64 arrays for `rows`."""
    lens = encoded.lengths[rows]
    width = int(lens.max())
    ids = np.full((rows.size, width), pad_id, np.int64)
    labels = np.full((rows.size, width), IGNORE_INDEX, np.int64)
    mask = (np.arange(width)[None, :] < lens[:, None]).astype(np.int64)
    flat = mask.astype(bool)
    ids[flat] = np.concatenate([encoded.input_ids[i] for i in rows])
    labels[flat] = np.concatenate([encoded.labels[i] for i in rows])
    return ids, mask, labels

