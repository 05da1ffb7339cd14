"""`thresher report`: one self-contained HTML file (inline CSS, figures as inline
data images, no script, a strict Content-Security-Policy) plus PNG copies of
the figures. A section whose inputs are missing says why instead."""
from __future__ import annotations

import base64
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from thresher.report.blocks import FigureOut, Figures, Section  # noqa: F401 (re-export)
from thresher.report.collect import RunData, category_field, collect
from thresher.report.markup import Markup, tag

CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'; base-uri 'none'; form-action 'none'"
STYLE = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",sans-serif;color:#212529;margin:0;background:#f8f9fa}
main{max-width:1180px;margin:0 auto;padding:24px 32px 64px}
header h1{margin:0 0 4px;font-size:26px}header p{margin:0;color:#495057}
nav{margin:16px 0;font-size:13px}nav a{margin-right:14px;color:#1c7ed6;text-decoration:none}
section{background:#fff;border:1px solid #dee2e6;border-radius:6px;padding:16px 20px;margin:18px 0}
section h2{margin:0 0 10px;font-size:19px}h3{font-size:15px;margin:16px 0 6px}
figure{margin:10px 0}figure img{max-width:100%;height:auto;display:block}
figcaption{color:#495057;font-size:12px;margin-top:4px}
table{border-collapse:collapse;font-size:12.5px;margin:8px 0;max-width:100%}
th,td{border-bottom:1px solid #e9ecef;padding:3px 8px;text-align:left;vertical-align:top;
 overflow-wrap:anywhere;max-width:420px}
th{background:#f1f3f5}td:first-child{white-space:nowrap}td.num{text-align:right;font-variant-numeric:tabular-nums}
pre{background:#f1f3f5;padding:8px;font-size:12px;overflow:auto;max-height:320px;white-space:pre-wrap;
 overflow-wrap:anywhere}
.cols{display:grid;grid-template-columns:minmax(0,1fr) minmax(0,1fr);gap:20px}.cols h3{margin-top:0}
.absent{color:#868e96;font-style:italic}.note{color:#e8590c}
.ok{color:#2b8a3e;font-weight:600}.warn{color:#e67700;font-weight:600}.fail{color:#c92a2a;font-weight:600}
"""


@dataclass
class ReportResult:
    html: Path
    figures_dir: Path | None
    figures: list[Path]
    sections: dict[str, bool]  # section id -> shown (False: it says why it is absent)


def write_report(run: str | Path, out: str | Path, *, pool=None, selected: np.ndarray | None = None,
                 by: str | None = None, cache_dir: str | None = None, figures: bool = True,
                 overwrite: bool = False, seed: int = 0, max_points: int = 3000) -> ReportResult:
    """Write the HTML report on RUN to `out`, and (figures=True) its PNGs to `<stem>_figures/`."""
    from thresher.data.writers import atomic_path, check_output_path

    out = Path(out)
    check_output_path(out, [], overwrite)
    data = collect(run, pool=pool, selected=selected)
    sections = build_sections(data, by=by, cache_dir=cache_dir, seed=seed, max_points=max_points)
    page = render_page(data, sections)
    fig_dir = out.with_name(f"{out.stem}_figures") if figures else None
    written = []
    if fig_dir is not None:
        fig_dir.mkdir(parents=True, exist_ok=True)
        for fig in (f for s in sections for f in s.figures):
            path = fig_dir / f"{fig.name}.png"
            with atomic_path(path) as tmp:
                tmp.write_bytes(fig.png)
            written.append(path)
        for stale in set(fig_dir.glob("[0-9][0-9]-*.png")) - set(written):  # figures of an earlier report
            stale.unlink()
    with atomic_path(out) as tmp:
        tmp.write_text(page, encoding="utf-8")
    return ReportResult(out, fig_dir, written, {s.id: s.absent is None for s in sections})


def build_sections(data: RunData, *, by: str | None = None, cache_dir: str | None = None, seed: int = 0,
                   max_points: int = 3000) -> list[Section]:
    """Every section of the report, in order (absent ones carry their reason)."""
    from thresher.report.evaluation import active_section, compare_section, curve_section
    from thresher.report.sections import (categories_section, embedding_section, embeddings, overview_section,
                                          representativeness_section, scores_section, trace_section)

    figs = Figures()
    embed, embed_note = embeddings(data, cache_dir)
    field_name, field_why = category_field(data, by) if data.pool is not None else (None, "")
    return [
        overview_section(data),
        categories_section(data, field_name, field_why, figs),
        scores_section(data, cache_dir, figs),
        embedding_section(data, embed, embed_note, seed, max_points, figs),
        trace_section(data, figs),
        representativeness_section(data, field_name, embed, seed),
        compare_section(data, figs),
        curve_section(data, figs),
        active_section(data, figs),
    ]


# -- page --------------------------------------------------------------------
def render_page(data: RunData, sections: list[Section]) -> str:
    """The whole document; every data string has passed through `esc`."""
    title = "thresher report"
    nav = tag("nav", *(tag("a", sec.title, href=f"#{sec.id}") for sec in sections))
    head = tag("head", Markup('<meta charset="utf-8">'),
               tag("meta", http_equiv="Content-Security-Policy", content=CSP),
               tag("meta", name="referrer", content="no-referrer"),
               tag("meta", name="viewport", content="width=device-width, initial-scale=1"),
               tag("title", title), tag("style", Markup(STYLE)))
    sub = Path(data.source).name + (f" — {(data.manifest or {}).get('method')}" if data.manifest else "")
    body = tag("body", tag("main", tag("header", tag("h1", title), tag("p", sub)), nav,
                           *(_section_html(sec) for sec in sections)))
    return "<!DOCTYPE html>\n" + tag("html", head, body, lang="en") + "\n"


def _section_html(sec: Section) -> Markup:
    if sec.absent:
        return tag("section", tag("h2", sec.title), tag("p", "Not shown: ", sec.absent, class_="absent"),
                   id=sec.id, data_absent=True)
    return tag("section", tag("h2", sec.title), *(_figure_html(f) for f in sec.figures), *sec.body, id=sec.id)


def _figure_html(fig: FigureOut) -> Markup:
    src = "data:image/png;base64," + base64.b64encode(fig.png).decode("ascii")
    return tag("figure", tag("img", src=src, alt=fig.title, width=fig.width, height=fig.height,
                             data_figure=fig.name),
               tag("figcaption", tag("strong", fig.title), ". ", fig.caption))
