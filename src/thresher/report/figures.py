"""The report's figures (matplotlib, Agg, no pyplot state): each function returns
a `Figure`; `render` turns one into PNG bytes. Every label from the data goes
through `label`, which escapes `$` so it is drawn literally, never as mathtext."""
from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

POOL, SELECTED, ACCENT = "#9aa5b1", "#d9480f", "#1c7ed6"
PALETTE = ["#1c7ed6", "#d9480f", "#2f9e44", "#ae3ec9", "#f08c00", "#0c8599", "#e03131", "#5c940d"]
LABEL_CHARS = 40
RC = {"font.size": 9,
      "axes.spines.top": False, "axes.spines.right": False, "axes.titlesize": 10, "figure.dpi": 100,
      "path.simplify": True}


@dataclass
class Rendered:
    png: bytes
    width: int  # pixels
    height: int


@contextmanager
def _style():
    import matplotlib

    with matplotlib.rc_context(RC):
        yield


def _figure(width: float, height: float):
    from matplotlib.figure import Figure

    with _style():
        return Figure(figsize=(width, height), layout="constrained")


def render(fig, dpi: int = 120) -> Rendered:
    """PNG bytes of `fig` (no timestamp, so the same figure gives the same bytes)."""
    import io

    from PIL import Image

    with _style():
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=dpi, metadata={"Software": None})
    png = buf.getvalue()
    width, height = Image.open(io.BytesIO(png)).size
    return Rendered(png, width, height)


def label(text: Any, limit: int = LABEL_CHARS) -> str:
    """A data value as a one-line axis label of at most `limit` characters."""
    text = " ".join(str(text).split())
    text = text if len(text) <= limit else text[: limit - 1] + "…"
    return text.replace("$", r"\$")  # an unescaped pair of $ would be parsed as mathtext


def category_bars(names: Sequence[str], pool_counts: np.ndarray, sel_counts: np.ndarray, field: str):
    """Share of each category in the pool and in the subset (horizontal bars)."""
    pool_share = pool_counts / max(pool_counts.sum(), 1)
    sel_share = sel_counts / max(sel_counts.sum(), 1)
    k = len(names)
    with _style():
        fig = _figure(8.5, max(2.2, 0.21 * k + 1.0))
        ax = fig.add_subplot()
        y = np.arange(k)
        ax.barh(y - 0.2, pool_share, height=0.4, color=POOL, label=f"pool (n={int(pool_counts.sum()):,})")
        ax.barh(y + 0.2, sel_share, height=0.4, color=SELECTED, label=f"selected (n={int(sel_counts.sum()):,})")
        ax.set_yticks(y, [label(n) for n in names])
        ax.invert_yaxis()
        ax.set_xlabel("share of rows")
        ax.set_title(label(f"{field}: pool vs selected", 80))
        ax.legend(loc="lower right", frameon=False)
    return fig


def score_histograms(columns: dict[str, tuple[np.ndarray, np.ndarray]], thresholds: list[dict[str, Any]]):
    """One panel per feature: pool and selected densities, with the thresholds a step used."""
    names = list(columns)
    ncols = min(3, len(names))
    nrows = int(np.ceil(len(names) / ncols))
    with _style():
        fig = _figure(3.1 * ncols + 0.4, 2.4 * nrows + 0.3)
        for i, name in enumerate(names):
            ax = fig.add_subplot(nrows, ncols, i + 1)
            pool, sel = (np.asarray(v, dtype=np.float64) for v in columns[name])
            pool, sel = pool[np.isfinite(pool)], sel[np.isfinite(sel)]
            bins = _bins(pool)
            ax.hist(pool, bins=bins, density=True, color=POOL, alpha=0.75, label="pool")
            if len(sel):
                ax.hist(sel, bins=bins, density=True, histtype="step", linewidth=1.6, color=SELECTED,
                        label="selected")
            for t in (t for t in thresholds if t["feature"] == name):
                ax.axvline(t["value"], color="#212529", linestyle="--", linewidth=1)
                ax.annotate(f"{t['op']} {t['value']:g}", (t["value"], 1), xycoords=("data", "axes fraction"),
                            xytext=(3, -10), textcoords="offset points", fontsize=8)
            ax.set_title(label(name))
            ax.set_yticks([])
            if i == 0:
                ax.legend(frameon=False, fontsize=8)
    return fig


def _bins(x: np.ndarray) -> np.ndarray | int:
    if not len(x):
        return 10
    lo, hi = np.percentile(x, [0, 99.5]) if len(x) > 200 else (x.min(), x.max())
    if lo == hi:
        return np.linspace(lo - 0.5, hi + 0.5, 11)
    if np.allclose(x, np.round(x)) and hi - lo <= 60:
        return np.arange(np.floor(lo) - 0.5, np.ceil(hi) + 1.5)
    return np.linspace(lo, hi, 41)


def embedding_map(xy: np.ndarray, selected: np.ndarray, variance: Sequence[float]):
    """Rows on their first two principal components; selected rows highlighted."""
    with _style():
        fig = _figure(7.0, 5.6)
        ax = fig.add_subplot()
        ax.scatter(xy[~selected, 0], xy[~selected, 1], s=6, color=POOL, alpha=0.5, linewidths=0,
                   label=f"not selected ({int((~selected).sum()):,})")
        ax.scatter(xy[selected, 0], xy[selected, 1], s=10, color=SELECTED, alpha=0.85, linewidths=0,
                   label=f"selected ({int(selected.sum()):,})")
        ax.set_xlabel(f"PC1 ({100 * variance[0]:.1f}% of variance)")
        ax.set_ylabel(f"PC2 ({100 * variance[1]:.1f}% of variance)")
        ax.legend(frameon=False, markerscale=2)
    return fig


def funnel(steps: Sequence[tuple[str, int]]):
    """Rows left after each step, as a horizontal funnel."""
    names = [label(s, 50) for s, _ in steps]
    rows = np.array([r for _, r in steps], dtype=float)
    with _style():
        fig = _figure(8.0, 0.42 * len(steps) + 1.0)
        ax = fig.add_subplot()
        y = np.arange(len(steps))
        ax.barh(y, rows, color=[POOL] + [ACCENT] * (len(steps) - 2) + [SELECTED] if len(steps) > 1 else POOL)
        for yi, r, prev in zip(y, rows, np.r_[rows[0], rows[:-1]]):
            note = f"{int(r):,}" + (f"  (−{int(prev - r):,})" if prev > r else "")
            ax.annotate(note, (r, yi), xytext=(4, 0), textcoords="offset points", va="center", fontsize=8)
        ax.set_yticks(y, names)
        ax.invert_yaxis()
        ax.set_xlim(0, rows.max() * 1.25 if rows.max() > 0 else 1)
        ax.set_xlabel("rows")
    return fig


def learning_curve(points: list[dict], metric: str, fit_x: np.ndarray | None, fit_y: np.ndarray | None,
                   extrapolation: list[dict]):
    """Metric against training rows: each seed's point, the mean, the fit and extrapolated intervals."""
    rows = np.array([p["rows"] for p in points], dtype=float)
    values = np.array([p["value"] for p in points], dtype=float)
    with _style():
        fig = _figure(7.0, 4.2)
        ax = fig.add_subplot()
        ax.scatter(rows, values, s=14, color=POOL, label="runs (seeds)", zorder=2)
        sizes = np.unique(rows)
        ax.plot(sizes, [values[rows == s].mean() for s in sizes], "o-", color=ACCENT, label="mean", zorder=3)
        if fit_x is not None:
            ax.plot(fit_x, fit_y, "--", color="#212529", linewidth=1, label="power-law fit")
        if extrapolation:
            ex = np.array([[e["rows"], e["value"], e.get("ci_low", e["value"]), e.get("ci_high", e["value"])]
                           for e in extrapolation], dtype=float)
            yerr = np.clip([ex[:, 1] - ex[:, 2], ex[:, 3] - ex[:, 1]], 0, None)  # an interval may miss its value
            ax.errorbar(ex[:, 0], ex[:, 1], yerr=yerr, fmt="s",
                        color=SELECTED, capsize=3, label="extrapolation (interval)")
        _log_rows_axis(ax)
        ax.set_xlabel("training rows (log scale)")
        ax.set_ylabel(label(metric))
        ax.legend(frameon=False)
    return fig


def _log_rows_axis(ax) -> None:
    """Log x axis labelled 100, 200, 500, 1,000, ... (no mathtext powers, no crowded minor labels)."""
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    ax.set_xscale("log")
    ax.xaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:,.0f}"))
    ax.xaxis.set_minor_formatter(NullFormatter())


def pir_sdf(arms: list[dict], metric: str):
    """PIR (score / full-data score) against the selected data fraction, with intervals."""
    with _style():
        fig = _figure(6.4, 4.0)
        ax = fig.add_subplot()
        for i, arm in enumerate(arms):
            p = arm["pir"][metric]
            low, high = p.get("ci_low", p["mean"]), p.get("ci_high", p["mean"])
            yerr = np.clip([[p["mean"] - low], [high - p["mean"]]], 0, None)
            ax.errorbar([arm["sdf"]], [p["mean"]], yerr=yerr, fmt="o",
                        capsize=3, color=PALETTE[i % len(PALETTE)], label=label(arm["name"], 30))
        ax.axhline(1.0, color="#212529", linewidth=0.8, linestyle=":")
        ax.set_xlabel("selected data fraction (SDF)")
        ax.set_ylabel(label(f"PIR ({metric})"))
        ax.legend(frameon=False, fontsize=8)
    return fig


def per_class_f1(classes: Sequence[str], arms: list[tuple[str, dict]]):
    """F1 per class, one bar per arm."""
    k, m = len(classes), len(arms)
    with _style():
        fig = _figure(8.0, max(2.4, 0.22 * k * max(1, m) ** 0.5 + 1.2))
        ax = fig.add_subplot()
        height = 0.8 / max(m, 1)
        y = np.arange(k)
        for i, (name, f1) in enumerate(arms):
            ax.barh(y - 0.4 + height * (i + 0.5), [f1.get(c, np.nan) for c in classes], height=height,
                    color=PALETTE[i % len(PALETTE)], label=label(name, 30))
        ax.set_yticks(y, [label(c) for c in classes])
        ax.invert_yaxis()
        ax.set_xlim(0, 1)
        ax.set_xlabel("F1")
        ax.legend(frameon=False, fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1))
    return fig


def confusion(panels: list[tuple[str, Sequence[str], np.ndarray]]):
    """Confusion matrices side by side (rows = true class, columns = predicted), shaded by row share."""
    k = max(len(labels) for _, labels, _ in panels)
    side = min(6.0, max(2.8, 0.36 * k + 1.6))
    with _style():
        fig = _figure(min(side * len(panels), 12.0), side + 0.3)
        for p, (title, labels, matrix) in enumerate(panels):
            ax = fig.add_subplot(1, len(panels), p + 1)
            m = np.asarray(matrix, dtype=float)
            rows = m.sum(axis=1, keepdims=True)
            share = m / np.where(rows == 0, 1, rows)
            ax.imshow(share, cmap="Blues", vmin=0, vmax=1)
            names = [label(x, 20) for x in labels]
            ax.set_xticks(range(len(names)), names, rotation=60, ha="right")
            ax.set_yticks(range(len(names)), names if p == 0 else [""] * len(names))
            if len(names) <= 15:
                for i in range(len(names)):
                    for j in range(len(names)):
                        ax.text(j, i, f"{int(m[i, j])}", ha="center", va="center", fontsize=7,
                                color="white" if share[i, j] > 0.6 else "#212529")
            ax.set_xlabel("predicted")
            if p == 0:
                ax.set_ylabel("true")
            ax.set_title(label(title, 40))
    return fig


def active_curves(strategies: list[tuple[str, np.ndarray, np.ndarray, np.ndarray, np.ndarray]], metric: str):
    """Mean metric per round (x = labeled rows) with its interval band, one line per strategy."""
    with _style():
        fig = _figure(7.0, 4.2)
        ax = fig.add_subplot()
        for i, (name, x, mean, low, high) in enumerate(strategies):
            color = PALETTE[i % len(PALETTE)]
            ax.plot(x, mean, "o-", markersize=3, color=color, label=label(name, 30))
            ax.fill_between(x, low, high, color=color, alpha=0.15, linewidth=0)
        ax.set_xlabel("labeled rows")
        ax.set_ylabel(label(metric))
        ax.legend(frameon=False)
    return fig
