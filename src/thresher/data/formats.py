"""Record formats: detect, validate (vectorized over Arrow) and normalize.

Supported record formats and the original fields each one reads:

    alpaca             instruction, input (optional), output
    sharegpt           conversations: [{from: system|human|gpt, value}]
    messages           messages: [{role: system|user|assistant, content}]
    prompt_completion  prompt, completion
    text               text

A field map (`{"output": "answer"}`) renames the fields a format reads, so
`--format alpaca --field-map instruction=question,output=answer` reads a
pool with `question`/`answer` columns.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from thresher.data.chat import MESSAGE_ROLES, content_problems, turnless_rows, type_name
from thresher.errors import UsageError

RECORD_FORMATS = ("alpaca", "sharegpt", "messages", "prompt_completion", "text")

# format -> (required roles, optional roles); a role is a field name before mapping
ROLES: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "messages": (("messages",), ()),
    "sharegpt": (("conversations",), ()),
    "alpaca": (("instruction", "output"), ("input",)),
    "prompt_completion": (("prompt", "completion"), ()),
    "text": (("text",), ()),
}
CHAT_KEYS = {"messages": ("role", "content"), "sharegpt": ("from", "value")}
CHAT_ROLES = {
    "messages": MESSAGE_ROLES,
    "sharegpt": ("system", "human", "gpt"),
}
TALK_ROLES = {"messages": ("user", "assistant"), "sharegpt": ("human", "gpt")}
SHAREGPT_TO_ROLE = {"system": "system", "human": "user", "gpt": "assistant"}
MESSAGE_TYPE = pa.list_(pa.struct([("role", pa.string()), ("content", pa.string())]))


@dataclass(frozen=True)
class Problem:
    """A malformed row: its position in the table, the field and the reason."""

    row: int
    field: str
    reason: str


def parse_field_map(text: str | None) -> dict[str, str]:
    """`"instruction=question,output=answer"` -> {"instruction": "question", ...}."""
    if not text:
        return {}
    out = {}
    for part in text.split(","):
        role, sep, column = part.partition("=")
        if not sep or not role.strip() or not column.strip():
            raise UsageError(f"--field-map: expected ROLE=COLUMN pairs separated by commas, got {part!r}")
        out[role.strip()] = column.strip()
    return out


def detect_format(columns: list[str], path: str, record_format: str | None = None,
                  field_map: dict[str, str] | None = None) -> str:
    """The record format of a table with `columns` (explicit `record_format` wins)."""
    field_map = field_map or {}
    if record_format is not None:
        if record_format not in RECORD_FORMATS:
            raise UsageError(f"unknown --format {record_format!r}; choose one of {', '.join(RECORD_FORMATS)}")
        return record_format
    present = set(columns)
    for fmt in RECORD_FORMATS:
        required, _ = ROLES[fmt]
        if all(field_map.get(r, r) in present for r in required):
            return fmt
    from thresher.errors import InputError

    shown = ", ".join(columns[:12]) or "none"
    raise InputError(
        path,
        f"unknown schema: fields [{shown}] match no record format; expected 'messages', "
        "'conversations', 'instruction'+'output', 'prompt'+'completion' or 'text' "
        "(or pass --format and --field-map)",
    )


def validate_table(table: pa.Table, record_format: str, field_map: dict[str, str]) -> list[Problem]:
    """Every malformed row of `table` (vectorized checks), at most one per row."""
    required, optional = ROLES[record_format]
    problems: list[Problem] = []
    for role in required + optional:
        column = field_map.get(role, role)
        if column not in table.column_names:
            if role in required:
                problems.append(Problem(0, column, f"missing required field '{column}'"))
            continue
        col = table.column(column).combine_chunks() if table.num_rows else pa.array([], pa.string())
        if record_format in CHAT_KEYS:
            problems += _check_chat(col, column, record_format)
        else:
            problems += _check_string(col, column, required=role in required)
    return first_per_row(problems)


def first_per_row(problems: list[Problem]) -> list[Problem]:
    """The first problem of each row, in row order."""
    seen: dict[int, Problem] = {}
    for p in problems:
        seen.setdefault(p.row, p)
    return [seen[r] for r in sorted(seen)]




def _rows_where(mask) -> np.ndarray:
    mask = pc.fill_null(mask, False)
    return np.flatnonzero(mask.to_numpy(zero_copy_only=False))


def _check_string(col: pa.Array, name: str, required: bool) -> list[Problem]:
    out = []
    if pa.types.is_null(col.type):
        if required:
            out += [Problem(int(r), name, f"field '{name}' is missing or null") for r in range(len(col))]
        return out
    if not (pa.types.is_string(col.type) or pa.types.is_large_string(col.type)):
        rows = np.flatnonzero(col.is_valid().to_numpy(zero_copy_only=False))
        reason = f"field '{name}' is {type_name(col.type)}, expected a string"
        out += [Problem(int(r), name, reason) for r in rows]
    if required:
        rows = np.flatnonzero(col.is_null().to_numpy(zero_copy_only=False))
        out += [Problem(int(r), name, f"field '{name}' is missing or null") for r in rows]
    return out


def _check_chat(col: pa.Array, name: str, record_format: str) -> list[Problem]:
    role_key, content_key = CHAT_KEYS[record_format]
    allowed = CHAT_ROLES[record_format]
    expected = f"a list of {{{role_key}, {content_key}}} objects"
    if pa.types.is_null(col.type):
        return [Problem(r, name, f"field '{name}' is missing or null") for r in range(len(col))]
    if not (pa.types.is_list(col.type) or pa.types.is_large_list(col.type)):
        rows = np.flatnonzero(col.is_valid().to_numpy(zero_copy_only=False))
        return [Problem(int(r), name, f"field '{name}' is {type_name(col.type)}, expected {expected}") for r in rows]
    out = [Problem(int(r), name, f"field '{name}' is missing or null") for r in _rows_where(col.is_null())]
    lengths = pc.fill_null(pc.list_value_length(col), 1)
    out += [Problem(int(r), name, f"field '{name}' is an empty list") for r in _rows_where(pc.equal(lengths, 0))]
    values = col.flatten()
    if len(values) == 0:
        return out
    owner = _owner_rows(col)
    position = np.arange(len(values)) - np.asarray(col.offsets)[owner] if len(values) else np.array([], np.int64)
    if not pa.types.is_struct(values.type):
        rows = np.unique(owner)
        return out + [Problem(int(r), name, f"field '{name}' holds {type_name(values.type)} items, expected {expected}")
                      for r in rows]
    field_names = [values.type.field(i).name for i in range(values.type.num_fields)]
    for key in (role_key, content_key):
        if key not in field_names:
            return out + [Problem(int(r), f"{name}[0].{key}", f"field '{name}[0].{key}' is missing") for r in np.unique(owner)]
    if record_format == "messages":  # content: a string or OpenAI content parts; null on a tool call
        out += [Problem(*p) for p in content_problems(values, owner, position, name, content_key)]
        keys = (role_key,)
    else:
        keys = (role_key, content_key)
    for key in keys:
        sub = values.field(key)
        if not (pa.types.is_string(sub.type) or pa.types.is_null(sub.type)):
            bad = np.flatnonzero(sub.is_valid().to_numpy(zero_copy_only=False))
            out += [Problem(int(owner[i]), f"{name}[{position[i]}].{key}",
                            f"field '{name}[{position[i]}].{key}' is {type_name(sub.type)}, expected a string")
                    for i in bad]
            continue
        for i in _rows_where(sub.is_null()):
            out.append(Problem(int(owner[i]), f"{name}[{position[i]}].{key}",
                               f"field '{name}[{position[i]}].{key}' is missing or null"))
    roles = values.field(role_key)
    if pa.types.is_string(roles.type):
        unknown = _rows_where(pc.invert(pc.is_in(roles, value_set=pa.array(allowed))))
        for i in unknown:
            role = roles[int(i)].as_py()
            if role is None:
                continue
            out.append(Problem(int(owner[i]), f"{name}[{position[i]}].{role_key}",
                               f"field '{name}[{position[i]}].{role_key}' has unknown role {role!r} "
                               f"(expected {', '.join(allowed)})"))
        out += [Problem(int(r), name, f"field '{name}' has no {' or '.join(TALK_ROLES[record_format])} turn "
                                      "(only system or tool turns): nothing to train on")
                for r in turnless_rows(roles, owner, len(col), TALK_ROLES[record_format])]
    return out


def _owner_rows(col: pa.Array) -> np.ndarray:
    """For each flattened list item, the row it belongs to."""
    offsets = np.asarray(col.offsets)
    lengths = np.diff(offsets)
    if col.null_count:
        lengths = np.where(col.is_null().to_numpy(zero_copy_only=False), 0, lengths)
    return np.repeat(np.arange(len(col)), lengths)


# -- canonical columns ----------------------------------------------------

def canonical_columns(ds, wanted: str | None = None) -> dict[str, pa.Array]:
    """`messages`, `prompt` and `response` for a Dataset with a known record format.

    For two-field formats only the `wanted` column is built (messages cost more).
    """
    fmt = ds.source.record_format
    fmap = dict(ds.source.field_map)
    table = ds.table
    if fmt == "unknown":
        raise UsageError(f"{ds.source.path}: no record format, so no prompt/response; pass --format")
    col = lambda role: _string(table, fmap.get(role, role))  # noqa: E731
    if fmt in ("alpaca", "prompt_completion", "text"):
        if fmt == "alpaca":
            instruction, response = col("instruction"), col("output")
            inp = col("input") if fmap.get("input", "input") in table.column_names else None
            prompt = instruction if inp is None else _join_nonempty(instruction, inp)
        elif fmt == "prompt_completion":
            prompt, response = col("prompt"), col("completion")
        else:
            response = col("text")
            prompt = pa.array([""] * len(response), pa.string())
        out = {"prompt": prompt, "response": response}
        if wanted in (None, "messages"):
            out["messages"] = _two_turns(None if fmt == "text" else prompt, response)
        return out
    return _chat_columns(table.column(fmap.get(ROLES[fmt][0][0], ROLES[fmt][0][0])).combine_chunks(), fmt)


def _string(table: pa.Table, name: str) -> pa.Array:
    arr = table.column(name).combine_chunks()
    if pa.types.is_null(arr.type):
        arr = pa.array([None] * len(arr), pa.string())
    return pc.fill_null(arr.cast(pa.string()), "")


def _join_nonempty(first: pa.Array, second: pa.Array) -> pa.Array:
    joined = pc.binary_join_element_wise(first, second, "\n\n")
    return pc.if_else(pc.equal(pc.utf8_length(second), 0), first, joined)


def _two_turns(prompt: pa.Array | None, response: pa.Array) -> pa.Array:
    n = len(response)
    if prompt is None:
        roles = pa.array(["assistant"] * n, pa.string())
        structs = pa.StructArray.from_arrays([roles, response], names=["role", "content"])
        return pa.ListArray.from_arrays(pa.array(np.arange(n + 1, dtype=np.int32)), structs).cast(MESSAGE_TYPE)
    roles = pa.array(np.tile(np.array(["user", "assistant"], dtype=object), n), pa.string())
    contents = pc.take(pa.concat_arrays([prompt, response]),
                       pa.array(np.stack([np.arange(n), np.arange(n) + n], axis=1).ravel()))
    structs = pa.StructArray.from_arrays([roles, contents], names=["role", "content"])
    return pa.ListArray.from_arrays(pa.array(np.arange(0, 2 * n + 1, 2, dtype=np.int32)), structs).cast(MESSAGE_TYPE)


def _chat_columns(col: pa.Array, fmt: str) -> dict[str, pa.Array]:
    """Prompt = the text of the turns before the response; response = the last assistant
    turn with text (see `thresher.data.chat`)."""
    from thresher.data.chat import chat_columns, content_text, tool_call_mask

    role_key, content_key = CHAT_KEYS[fmt]
    values = col.flatten()
    roles = pc.fill_null(values.field(role_key).cast(pa.string()), "")
    if fmt == "sharegpt":
        roles = pc.replace_substring_regex(roles, "^human$", "user")
        roles = pc.replace_substring_regex(roles, "^gpt$", "assistant")
    texts = content_text(values.field(content_key))
    return chat_columns(col, roles, texts, tool_call_mask(values), MESSAGE_TYPE)
