"""The category distribution before and after balancing, as one table."""
from __future__ import annotations

from typing import Any

import numpy as np


def distribution_table(labels: list[str], before: np.ndarray, after: np.ndarray,
                       weights: np.ndarray | None = None) -> list[dict[str, Any]]:
    """One row per class: counts and shares before/after, and the per-row weight.

    `before` / `after` are rows per class; `weights` the `_weight` each output
    row of the class carries (1 when None). `share_after` is the class's share
    of the total output weight, so for the `weights` strategy it shows the
    effective (weighted) distribution.
    """
    before = np.asarray(before, dtype=np.int64)
    after = np.asarray(after, dtype=np.int64)
    weights = np.ones(len(labels)) if weights is None else np.asarray(weights, dtype=np.float64)
    mass = after * weights
    share_before = before / max(int(before.sum()), 1)
    share_after = mass / mass.sum() if mass.sum() > 0 else np.zeros(len(labels))
    return [{"stratum": c, "pool": int(b), "selected": int(a), "share_pool": float(sb),
             "share_selected": float(sa), "weight": float(w)}
            for c, b, a, sb, sa, w in zip(labels, before.tolist(), after.tolist(), share_before.tolist(),
                                          share_after.tolist(), weights.tolist())]


def imbalance_ratio(counts: np.ndarray, weights: np.ndarray | None = None) -> float:
    """Minority / majority (weighted) class size: 1 is balanced, near 0 very imbalanced."""
    mass = np.asarray(counts, dtype=np.float64) * (1.0 if weights is None else np.asarray(weights))
    mass = mass[mass > 0]
    return float(mass.min() / mass.max()) if len(mass) else float("nan")


def render_table(table: list[dict[str, Any]], max_rows: int = 60):
    """A rich Table (class, before, after, shares, weight), largest classes first."""
    from rich.table import Table

    out = Table("class", "before", "after", "share before", "share after", "weight")
    rows = sorted(table, key=lambda r: (-r["pool"], r["stratum"]))
    for r in rows[:max_rows]:
        out.add_row(str(r["stratum"]), str(r["pool"]), str(r["selected"]), f"{r['share_pool']:.2%}",
                    f"{r['share_selected']:.2%}", f"{r['weight']:.4g}")
    if len(rows) > max_rows:
        out.caption = f"... {len(rows) - max_rows} more classes in the manifest"
    return out
