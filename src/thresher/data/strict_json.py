"""Strict JSON for the readers. What a record may be: no NaN/Infinity, no
duplicate keys, nesting at most MAX_DEPTH levels, no lone surrogates, each
field one JSON kind across rows (a clash names the row and the field). Also
the cheap byte-level and schema checks that let a plain JSONL file take
pyarrow's fast reader instead of the line-by-line parser. The readers
(`thresher.data.readers`) decide per format what to do with a refused row.
"""
from __future__ import annotations

import io
import json
import re

import numpy as np
import pyarrow as pa

from thresher.data.formats import Problem, detect_format

MAX_DEPTH = 64
ARROW_SAFE_DEPTH = 5000  # pyarrow.json segfaults on nesting near 30,000 levels


def _max_bracket_depth(arr: np.ndarray, starts: np.ndarray) -> int:
    """Upper bound on JSON nesting per line (brackets inside strings count too)."""
    pos = np.flatnonzero((arr == 0x7B) | (arr == 0x5B) | (arr == 0x7D) | (arr == 0x5D))
    if len(pos) == 0:
        return 0
    step = np.where((arr[pos] == 0x7B) | (arr[pos] == 0x5B), 1, -1)
    depth = np.cumsum(step)
    line_of = np.searchsorted(starts, pos, side="right") - 1
    first = np.searchsorted(line_of, line_of, side="left")
    base = depth[first] - step[first]
    return int((depth - base).max())


def nesting_is_shallow(buf: bytes, arr: np.ndarray, starts: np.ndarray, ends: np.ndarray) -> bool:
    """True when no line nests deeper than Arrow's parser survives (it crashes near 30k).

    A line's depth is at most half its length, so only very long lines are
    counted; the finer MAX_DEPTH limit is checked on the parsed schema.
    """
    long_lines = (ends - starts) > 2 * ARROW_SAFE_DEPTH
    for s, e in zip(starts[long_lines].tolist(), ends[long_lines].tolist()):
        if buf.count(b"[", s, e) + buf.count(b"{", s, e) > ARROW_SAFE_DEPTH:
            if _max_bracket_depth(arr[s:e], np.zeros(1, dtype=np.int64)) > ARROW_SAFE_DEPTH:
                return False
    return True


def _type_depth(typ: pa.DataType) -> int:
    if pa.types.is_list(typ) or pa.types.is_large_list(typ):
        return 1 + _type_depth(typ.value_type)
    if pa.types.is_struct(typ):
        return 1 + max((_type_depth(typ.field(i).type) for i in range(typ.num_fields)), default=0)
    return 0


def arrow_table_is_clean(table: pa.Table) -> bool:
    """Valid UTF-8 and no NaN/Infinity (which Arrow accepts but JSON does not allow)."""
    if any(_type_depth(f.type) >= MAX_DEPTH for f in table.schema):
        return False
    try:
        table.validate(full=True)
    except pa.ArrowInvalid:
        return False
    return not any(_has_non_finite(col.combine_chunks()) for col in table.columns)


def _has_non_finite(arr: pa.Array) -> bool:
    import pyarrow.compute as pc

    typ = arr.type
    if pa.types.is_floating(typ):
        return bool(pc.any(pc.invert(pc.is_finite(arr))).as_py() or False)
    if pa.types.is_list(typ) or pa.types.is_large_list(typ):
        return _has_non_finite(arr.flatten())
    if pa.types.is_struct(typ):
        return any(_has_non_finite(arr.field(i)) for i in range(typ.num_fields))
    return False


def try_arrow_json(buf: bytes) -> pa.Table | None:
    import pyarrow.json as pj

    try:
        return pj.read_json(io.BytesIO(buf), read_options=pj.ReadOptions(block_size=1 << 24))
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return None


def _reject_constant(name: str):
    raise ValueError(f"non-standard JSON value {name}")


def _no_duplicate_keys(pairs):
    obj = {}
    for key, value in pairs:
        if key in obj:
            raise ValueError(f"duplicate key {key!r}")
        obj[key] = value
    return obj


def parse_json_text(text: str):
    """Strict JSON: no NaN/Infinity, no duplicate keys, bounded nesting."""
    try:
        return json.loads(text, parse_constant=_reject_constant, object_pairs_hook=_no_duplicate_keys)
    except json.JSONDecodeError as e:
        raise ValueError(f"invalid JSON ({e.msg} at column {e.colno})") from None
    except RecursionError:
        raise ValueError("invalid JSON (nesting is too deep)") from None


# A JSON \uD800-\uDFFF escape. Valid pairs decode to one character; what is left
# after json.loads is a lone surrogate, which no UTF-8 file (or Arrow string) can hold.
SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")
_SURROGATE = re.compile("[\ud800-\udfff]")


def _surrogate_problem(obj) -> tuple[str | None, str | None]:
    """(reason, field) for the first lone surrogate in a parsed record, else (None, None).

    Such rows are refused rather than passed through: their text cannot be
    featurized, written as UTF-8 or printed, so every later step would fail.
    """
    found = _find_surrogate(obj, "")
    if found is None:
        return None, None
    where, char = found
    where = _SURROGATE.sub(lambda m: f"\\u{ord(m.group()):04x}", where)  # a key may hold one too
    return (f"field '{where}' holds a lone surrogate \\u{ord(char):04x} (a JSON escape that is not valid "
            "Unicode; fix the program that wrote the file)"), where


def _find_surrogate(value, where: str) -> tuple[str, str] | None:
    if isinstance(value, str):
        hit = _SURROGATE.search(value)
        return (where, hit.group()) if hit else None
    if isinstance(value, dict):
        for key, item in value.items():
            inner = f"{where}.{key}" if where else key
            hit = _SURROGATE.search(key)
            if hit:
                return inner, hit.group()
            found = _find_surrogate(item, inner)
            if found:
                return found
    elif isinstance(value, list):
        for i, item in enumerate(value):
            found = _find_surrogate(item, f"{where}[{i}]")
            if found:
                return found
    return None


def record_problem(obj, escapes: bool, expected: str = "an object") -> tuple[str | None, str | None]:
    """(reason, field) when a parsed record is refused: not an object, nested deeper
    than MAX_DEPTH, or holding a lone surrogate (looked for when `escapes`: its raw
    bytes hold a surrogate escape); else (None, None)."""
    if not isinstance(obj, dict):
        return f"expected {expected}, got {json_kind(obj)}", None
    if _depth(obj) > MAX_DEPTH:
        return f"nesting deeper than {MAX_DEPTH} levels", None
    return _surrogate_problem(obj) if escapes else (None, None)


def _depth(obj, level: int = 1) -> int:
    if level > MAX_DEPTH:
        return level
    if isinstance(obj, dict):
        return max((_depth(v, level + 1) for v in obj.values()), default=level)
    if isinstance(obj, list):
        return max((_depth(v, level + 1) for v in obj), default=level)
    return level


def json_kind(value) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    return "an object"


def records_to_table(records: list[dict], origin: np.ndarray) -> tuple[pa.Table, list[Problem]]:
    """Arrow table from records; rows whose field kinds clash with earlier rows become problems."""
    first_kind: dict[str, tuple[str, int]] = dict(_format_kinds(records))
    problems: list[Problem] = []
    good = []
    for rec, o in zip(records, origin.tolist()):
        clash = None
        for key, value in rec.items():
            if value is None:
                continue
            kind = json_kind(value)
            seen = first_kind.get(key)
            if seen is None:
                first_kind[key] = (kind, o)
            elif seen[0] != kind:
                where = f", but {seen[0]} on line {seen[1]}" if seen[1] else f", expected {seen[0]}"
                clash = Problem(o, key, f"field '{key}' is {kind}{where}")
                break
        if clash:
            problems.append(clash)
        else:
            good.append(rec)
    try:
        table = pa.Table.from_pylist(good)
    except (pa.ArrowInvalid, pa.ArrowTypeError) as err:
        table = _table_with_unified_content(good)
        if table is None:
            problems.append(_nested_clash(good, origin, err))
            table = pa.table({})
    return table, problems


def _table_with_unified_content(records: list[dict]) -> pa.Table | None:
    """Retry after giving string chat contents the part-list type other turns use
    (`thresher.data.chat.unify_content`); None if that was not the clash."""
    from thresher.data.chat import unify_content

    if not unify_content(records):
        return None
    try:
        return pa.Table.from_pylist(records)
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        return None


def _format_kinds(records: list[dict]) -> dict[str, tuple[str, int]]:
    """The JSON kind each field of the detected record format must have (line 0 = by format)."""
    from thresher.data.formats import CHAT_KEYS, ROLES

    keys = list(dict.fromkeys(k for r in records[:1000] for k in r))
    try:
        fmt = detect_format(keys, "")
    except Exception:  # unknown schema is reported later, with the file name
        return {}
    required, optional = ROLES[fmt]
    kind = "a list" if fmt in CHAT_KEYS else "a string"
    return {f: (kind, 0) for f in required + optional}


def _nested_clash(records: list[dict], origin: np.ndarray, err: Exception) -> Problem:
    """Find the first record that cannot join the table built from those before it."""
    for i in range(1, len(records) + 1):
        try:
            pa.Table.from_pylist(records[:i])
        except (pa.ArrowInvalid, pa.ArrowTypeError) as e:
            return Problem(int(origin[i - 1]), None, f"nested value types differ from earlier rows ({e})")
    return Problem(int(origin[0]), None, f"cannot build a table ({err})")
