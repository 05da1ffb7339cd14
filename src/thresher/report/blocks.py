"""The blocks a report page is made of: a `Section` (title, body, figures, or
why it is absent) and its figures, rendered and numbered in report order.
Below the page (`html`) and the section builders (`sections`, `evaluation`)."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

@dataclass
class FigureOut:
    name: str  # file stem of the PNG
    title: str
    caption: str
    png: bytes
    width: int
    height: int


@dataclass
class Section:
    id: str
    title: str
    body: list[Any] = field(default_factory=list)
    figures: list[FigureOut] = field(default_factory=list)
    absent: str | None = None


class Figures:
    """Renders figures and numbers them in report order."""

    def __init__(self):
        self.count = 0

    def make(self, fig, name: str, title: str, caption: str) -> FigureOut:
        from thresher.report.figures import render

        self.count += 1
        r = render(fig)
        return FigureOut(f"{self.count:02d}-{name}", title, caption, r.png, r.width, r.height)
