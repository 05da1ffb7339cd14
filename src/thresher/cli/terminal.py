"""The one chokepoint for text from the data on its way to the terminal.

Labels, ids, field names, paths and reasons come from files thresher does not
control. Printed raw they can restyle or crash rich (`[bold red]`, `[/]`),
move the cursor or rewrite the screen (ESC sequences, a bare CR), reorder
what the reader sees (bidi overrides) or crash the encoder (lone
surrogates). Every such string goes through `escape_data` before it reaches
a rich console (markup escaped too), or `printable` before plain output
(`typer.echo`, JSON on stdout), as `report/markup.py` does for HTML.
"""
from __future__ import annotations

import re

from rich.markup import escape as _escape_markup

# C0 and C1 controls, DEL, bidi embeddings/overrides/isolates, and lone surrogates.
_UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069\ud800-\udfff]")
# The same minus the JSON-escaped C0 range: for text that is already JSON.
_UNSAFE_IN_JSON = re.compile("[\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069\ud800-\udfff]")


def _visible(match: re.Match) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def printable(value: object) -> str:
    """`value` as one inert line of text: controls, bidi marks and lone surrogates
    shown as `\\x1b` / `\\u202e` / `\\ud800` escapes (newlines and tabs too)."""
    return _UNSAFE.sub(_visible, str(value))


def escape_data(value: object) -> str:
    """`printable(value)` with rich markup escaped: safe inside `console.print`
    strings and table cells, shows exactly what the data holds."""
    return _escape_markup(printable(value))


def printable_json(text: str) -> str:
    """JSON text (from `json.dumps(..., ensure_ascii=False)`) with the characters
    it leaves raw but a terminal acts on escaped as `\\uXXXX`: still valid JSON
    that decodes to the same strings."""
    return _UNSAFE_IN_JSON.sub(lambda m: f"\\u{ord(m.group()):04x}", text)
