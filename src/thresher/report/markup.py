"""The one place HTML is made: every value is escaped unless it is `Markup`
built here. Data never reaches an attribute that loads or links anything:
`href` takes only in-page anchors, `src` only inline data images."""
from __future__ import annotations

import html
import json
import re
from typing import Any, Iterable

_NAME = re.compile(r"^[a-z][a-z0-9-]*$")
_ANCHOR = re.compile(r"^#[a-z][a-z0-9-]*$")
_DATA_IMAGE = re.compile(r"^data:image/(png|svg\+xml);base64,[A-Za-z0-9+/=]+$")
TAGS = frozenset("html head body meta title style main header section nav h1 h2 h3 h4 p div span ul ol li a img "
                 "table thead tbody tr th td pre code figure figcaption details summary small strong em "
                 "caption".split())


class Markup(str):
    """HTML that is safe as it is (made by this module)."""


def esc(value: Any) -> Markup:
    """`value` as HTML text: Markup passes through, anything else is escaped."""
    if isinstance(value, Markup):
        return value
    return Markup(html.escape("" if value is None else str(value), quote=True))


def join(parts: Iterable[Any], sep: str = "") -> Markup:
    return Markup(esc(sep).join(esc(p) for p in parts))


def tag(name: str, /, *children: Any, **attrs: Any) -> Markup:
    """`<name attrs>children</name>`; children and attribute values are escaped.

    Attribute names come from code (`class_` for class, `data_x` for data-x);
    event handlers, `style` from data and link targets other than `#anchor`
    are refused, so no value can run script or fetch anything."""
    if name not in TAGS:
        raise ValueError(f"tag {name!r} is not allowed")
    rendered = "".join(_attr(k, v) for k, v in attrs.items() if v is not None and v is not False)
    if name in ("img", "meta"):
        return Markup(f"<{name}{rendered}>")
    return Markup(f"<{name}{rendered}>{join(children)}</{name}>")


def _attr(key: str, value: Any) -> str:
    key = key.rstrip("_").replace("_", "-")
    if not _NAME.match(key) or key.startswith("on") or key in ("srcdoc", "formaction", "action", "srcset"):
        raise ValueError(f"attribute {key!r} is not allowed")
    text = str(value)
    if key == "href" and not _ANCHOR.match(text):
        raise ValueError(f"href must be an in-page anchor, got {text[:40]!r}")
    if key == "src" and not _DATA_IMAGE.match(text):
        raise ValueError("src must be an inline base64 PNG or SVG image")
    if value is True:
        return f" {key}"
    return f' {key}="{html.escape(text, quote=True)}"'


def table(header: list[Any] | None, rows: Iterable[list[Any]], class_: str | None = None,
          caption: Any = None) -> Markup:
    """A table (no header row when `header` is None); each cell is escaped unless it is Markup."""
    head = tag("thead", tag("tr", *(tag("th", h) for h in header))) if header else ""
    body = tag("tbody", *(tag("tr", *(tag("td", c, class_="num" if _numeric(c) else None) for c in r))
                          for r in rows))
    return tag("table", tag("caption", caption) if caption is not None else "", head, body, class_=class_)


_NUMBER = re.compile(r"^[-+]?[0-9][0-9,]*(\.[0-9]+)?(e[-+]?[0-9]+)?%?$|^–$")


def _numeric(cell: Any) -> bool:
    if isinstance(cell, (int, float)) and not isinstance(cell, bool):
        return True
    return isinstance(cell, str) and not isinstance(cell, Markup) and bool(_NUMBER.match(cell))


def pre_json(value: Any, limit: int = 4000) -> Markup:
    """A value as indented JSON in a <pre> (cut at `limit` characters)."""
    text = json.dumps(value, indent=2, ensure_ascii=False, default=str)
    if len(text) > limit:
        text = text[:limit] + f"\n… ({len(text) - limit} more characters)"
    return tag("pre", text)


def fmt(value: Any, digits: int = 4) -> str:
    """A number for a table: ints as is, floats with `digits` significant digits, None as '–'."""
    if value is None:
        return "–"
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return "–" if value != value else f"{value:.{digits}g}"
    return str(value)


def short(text: Any, limit: int = 160) -> str:
    """`text` cut to `limit` characters with an ellipsis."""
    text = "" if text is None else str(text)
    return text if len(text) <= limit else text[: limit - 1] + "…"
