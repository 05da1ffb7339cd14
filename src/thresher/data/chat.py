"""Chat records as real exports hold them: OpenAI content-part lists, tool calls
and tool turns, reasoning fields; validated and reduced to prompt/response text
with Arrow compute (no Python step per row).

Handling, as documented in README "Data in, data out":

- `content` is a string, or a list of parts (`[{"type": "text", "text": ...},
  {"type": "image_url", ...}]`); the text parts, joined by "\\n", are the turn's
  text for features. Other parts are kept in the row, not in the text.
- `tool` / `function` turns and assistant `tool_calls` are kept in the row; an
  assistant turn that is only a tool call (no text) is never the response.
- reasoning fields (`reasoning_content`, `thinking`) and any other message
  keys are kept in the row, not in the text.
- the response is the text of the last assistant turn that has text or no tool
  call; the prompt is the text of every earlier turn that has text, joined by
  "\\n\\n". An assistant-first conversation is read like any other (the opening
  turn is prompt); a conversation without a user or assistant turn (system or
  tool turns only) is an error naming the row.
"""
from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

MESSAGE_ROLES = ("system", "developer", "user", "assistant", "tool", "function")
TEXT_PART_TYPES = ("text", "input_text", "output_text")  # chat completions / responses API names
CALL_KEYS = ("tool_calls", "function_call")
REASONING_KEYS = ("reasoning_content", "thinking", "reasoning")


def is_string(typ: pa.DataType) -> bool:
    return pa.types.is_string(typ) or pa.types.is_large_string(typ)


def is_list(typ: pa.DataType) -> bool:
    return pa.types.is_list(typ) or pa.types.is_large_list(typ)


def list_parts(arr: pa.Array) -> tuple[pa.Array, np.ndarray]:
    """(the items of every non-null list, the owning row of each item)."""
    lengths = pc.fill_null(pc.list_value_length(arr), 0).to_numpy(zero_copy_only=False).astype(np.int64)
    return arr.flatten(), np.repeat(np.arange(len(arr)), lengths)


def field_or_none(structs: pa.Array, name: str) -> pa.Array | None:
    typ = structs.type
    if not pa.types.is_struct(typ) or typ.get_field_index(name) < 0:
        return None
    return structs.field(name)


# -- per-message facts --------------------------------------------------------

def tool_call_mask(messages: pa.Array) -> np.ndarray:
    """True for each message (struct) that carries a non-empty tool/function call."""
    out = np.zeros(len(messages), dtype=bool)
    for key in CALL_KEYS:
        calls = field_or_none(messages, key)
        if calls is None or pa.types.is_null(calls.type):
            continue
        if is_list(calls.type):
            has = pc.fill_null(pc.greater(pc.list_value_length(calls), 0), False)
        else:
            has = calls.is_valid()
        out |= has.to_numpy(zero_copy_only=False)
    return out


def content_text(content: pa.Array) -> pa.Array:
    """One string per message: the content string, or its text parts joined by "\\n"."""
    if pa.types.is_null(content.type):
        return pa.array([""] * len(content), pa.string())
    if is_string(content.type):
        return pc.fill_null(content.cast(pa.string()), "")
    parts, owner = list_parts(content)
    text = field_or_none(parts, "text")
    if text is None or not is_string(text.type):
        return pa.array([""] * len(content), pa.string())
    keep = text.is_valid().to_numpy(zero_copy_only=False)
    kind = field_or_none(parts, "type")
    if kind is not None and is_string(kind.type):
        keep &= pc.fill_null(pc.is_in(kind, value_set=pa.array(TEXT_PART_TYPES)), False) \
            .to_numpy(zero_copy_only=False)
    counts = np.bincount(owner[keep], minlength=len(content))
    offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int32)
    kept = text.cast(pa.string()).filter(pa.array(keep))
    return pc.binary_join(pa.ListArray.from_arrays(pa.array(offsets), kept), "\n")


# -- validation ---------------------------------------------------------------

def content_problems(messages: pa.Array, owner: np.ndarray, position: np.ndarray, name: str,
                     key: str) -> list[tuple[int, str, str]]:
    """(row, field, reason) for each message whose `key` (content) is not a string or
    a list of parts; null content is fine on a tool-call turn."""
    content = messages.field(key)
    where = lambda i: f"{name}[{position[i]}].{key}"  # noqa: E731
    calls = tool_call_mask(messages)
    out = [(int(owner[i]), where(i), f"field '{where(i)}' is missing or null")
           for i in np.flatnonzero(content.is_null().to_numpy(zero_copy_only=False) & ~calls)]
    if pa.types.is_null(content.type) or is_string(content.type):
        return out
    expected = "expected a string or a list of {type, text} parts"
    if not is_list(content.type) or not pa.types.is_struct(content.type.value_type):
        bad = np.flatnonzero(content.is_valid().to_numpy(zero_copy_only=False))
        what = "a list of non-objects" if is_list(content.type) else type_name(content.type)
        return out + [(int(owner[i]), where(i), f"field '{where(i)}' is {what}, {expected}") for i in bad]
    parts, part_owner = list_parts(content)
    kind, text = field_or_none(parts, "type"), field_or_none(parts, "text")
    if kind is None or not (is_string(kind.type) or pa.types.is_null(kind.type)):
        msgs = np.unique(part_owner)
        return out + [(int(owner[i]), where(i), f"field '{where(i)}' has parts without a string 'type', {expected}")
                      for i in msgs]
    is_text = pc.fill_null(pc.is_in(kind, value_set=pa.array(TEXT_PART_TYPES)), False).to_numpy(zero_copy_only=False)
    no_text = np.ones(len(parts), dtype=bool) if text is None or not is_string(text.type) \
        else text.is_null().to_numpy(zero_copy_only=False)
    part_start = np.searchsorted(part_owner, part_owner, side="left")
    for j in np.flatnonzero(is_text & no_text):
        i = part_owner[j]
        field = f"{where(i)}[{j - part_start[j]}].text"
        out.append((int(owner[i]), field, f"field '{field}' is missing or not a string (a text part needs text)"))
    return out


def turnless_rows(roles: pa.Array, owner: np.ndarray, n_rows: int, talk_roles: tuple[str, ...]) -> np.ndarray:
    """Rows with turns but none by a user or assistant (a system- or tool-only conversation)."""
    talk = pc.fill_null(pc.is_in(roles, value_set=pa.array(talk_roles)), False).to_numpy(zero_copy_only=False)
    has_turns = np.bincount(owner, minlength=n_rows) > 0
    return np.flatnonzero(has_turns & (np.bincount(owner[talk], minlength=n_rows) == 0))


def type_name(typ: pa.DataType) -> str:
    """How an error message names an Arrow type: "a list", "an object", "a number"…"""
    if pa.types.is_list(typ) or pa.types.is_large_list(typ):
        return "a list"
    if pa.types.is_struct(typ):
        return "an object"
    if pa.types.is_boolean(typ):
        return "a boolean"
    if pa.types.is_integer(typ) or pa.types.is_floating(typ):
        return "a number"
    return str(typ)


# -- prompt / response ----------------------------------------------------------

def chat_columns(col: pa.Array, roles: pa.Array, texts: pa.Array, calls: np.ndarray,
                 message_type: pa.DataType) -> dict[str, pa.Array]:
    """`prompt`, `response` and canonical `messages` ({role, content=text}) per row.

    `roles`, `texts` and `calls` are per message of `col.flatten()`.
    """
    n = len(col)
    lengths = pc.fill_null(pc.list_value_length(col), 0).to_numpy(zero_copy_only=False).astype(np.int64)
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    owner = np.repeat(np.arange(n), lengths)
    text_len = pc.utf8_length(texts).to_numpy(zero_copy_only=False)
    assistant = pc.fill_null(pc.equal(roles, "assistant"), False).to_numpy(zero_copy_only=False)
    candidate = assistant & ~(calls & (text_len == 0))  # a bare tool call is no response
    index = np.where(candidate, np.arange(len(texts)), -1)
    last = np.full(n, -1, dtype=np.int64)
    nonempty = lengths > 0
    if nonempty.any():
        # segments between consecutive non-empty rows' starts are exactly those rows' turns
        last[nonempty] = np.maximum.reduceat(index, offsets[:-1][nonempty])
    has_response = last >= 0
    response = pa.array([""] * n, pa.string())
    if has_response.any():
        response = pc.if_else(pa.array(has_response), pc.take(texts, pa.array(np.maximum(last, 0))), "")
    before = (np.arange(len(texts)) < last[owner]) | ~has_response[owner]
    in_prompt = before & (text_len > 0)
    counts = np.bincount(owner[in_prompt], minlength=n)
    prompt_offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int32)
    prompt = pc.binary_join(pa.ListArray.from_arrays(pa.array(prompt_offsets), texts.filter(pa.array(in_prompt))),
                            "\n\n")
    structs = pa.StructArray.from_arrays([roles, texts], names=["role", "content"])
    messages = pa.ListArray.from_arrays(pa.array(offsets.astype(np.int32)), structs).cast(message_type)
    return {"prompt": pc.fill_null(prompt, ""), "response": pc.fill_null(response, ""), "messages": messages}


# -- the slow path: mixed content kinds ----------------------------------------

def unify_content(records: list[dict]) -> bool:
    """Where one file mixes string and part-list `content` (common: part-list user
    turns, string assistant turns), Arrow needs one type: a string content becomes
    one text part, which the chat APIs treat the same. JSON output is still the
    original bytes. Changes `records` in place; True if any was changed."""
    chats = [v for rec in records for v in rec.values() if _is_chat(v)]
    if not any(isinstance(m.get("content"), list) for conv in chats for m in conv):
        return False
    changed = False
    for conv in chats:
        for m in conv:
            if isinstance(m.get("content"), str):
                m["content"] = [{"type": "text", "text": m["content"]}]
                changed = True
    return changed


def _is_chat(value) -> bool:
    return isinstance(value, list) and bool(value) and all(isinstance(m, dict) and "role" in m for m in value)


# -- inspect ------------------------------------------------------------------

def chat_profile(col: pa.Array, role_key: str, content_key: str) -> dict:
    """Counts `inspect` shows: rows with tool calls / tool turns / part lists /
    non-text parts / reasoning, and turns per role."""
    values, owner = list_parts(col)
    n = len(col)

    def rows_with(mask: np.ndarray) -> int:
        return int(np.count_nonzero(np.bincount(owner[mask], minlength=n)))

    roles = pc.fill_null(values.field(role_key).cast(pa.string()), "")
    role_counts = pc.value_counts(roles).to_pylist() if len(roles) else []
    role_np = roles.to_numpy(zero_copy_only=False)
    out = {"turns_by_role": {r["values"]: r["counts"] for r in sorted(role_counts, key=lambda r: -r["counts"])},
           "rows_with_tool_calls": rows_with(tool_call_mask(values)),
           "rows_with_tool_turns": rows_with(np.isin(role_np, ["tool", "function", "observation"])),
           "rows_with_content_parts": 0, "rows_with_non_text_parts": 0, "rows_with_reasoning": 0}
    reasoning = np.zeros(len(values), dtype=bool)
    for key in REASONING_KEYS:
        f = field_or_none(values, key)
        if f is not None and not pa.types.is_null(f.type):
            reasoning |= f.is_valid().to_numpy(zero_copy_only=False)
    out["rows_with_reasoning"] = rows_with(reasoning)
    content = field_or_none(values, content_key)
    if content is not None and is_list(content.type) and pa.types.is_struct(content.type.value_type):
        out["rows_with_content_parts"] = rows_with(content.is_valid().to_numpy(zero_copy_only=False))
        parts, part_owner = list_parts(content)
        kind = field_or_none(parts, "type")
        if kind is not None and is_string(kind.type):
            other = ~pc.fill_null(pc.is_in(kind, value_set=pa.array(TEXT_PART_TYPES)), False) \
                .to_numpy(zero_copy_only=False)
            with_other = np.zeros(len(values), dtype=bool)
            with_other[part_owner[other]] = True
            out["rows_with_non_text_parts"] = rows_with(with_other)
    return out
