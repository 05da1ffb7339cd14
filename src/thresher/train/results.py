"""Summaries over seeds (t-intervals), PIR, plain-text tables and the atomic
results folder shared by `compare`, `curve` and `sweep`."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from thresher.core.selection import _jsonable
from thresher.errors import OutputExistsError

HIGHER_IS_BETTER = frozenset({"accuracy", "macro_f1", "micro_f1", "f1", "exact_match"})
LOWER_IS_BETTER = frozenset({"loss", "perplexity"})


def higher_is_better(metric: str) -> bool:
    """True for scores (accuracy, F1), False for losses (loss, perplexity)."""
    return metric not in LOWER_IS_BETTER


def t_interval(values: Sequence[float], level: float = 0.95) -> dict[str, float | int]:
    """Mean and Student-t confidence interval over seeds: mean +- t_{n-1} * sd / sqrt(n).
    With one value (or none) the interval collapses to the mean; `n` tells."""
    from scipy.stats import t

    x = np.asarray([v for v in values if v is not None and np.isfinite(v)], dtype=np.float64)
    n = int(x.size)
    if n == 0:
        return {"mean": float("nan"), "ci_low": float("nan"), "ci_high": float("nan"), "n": 0}
    mean = float(x.mean())
    if n == 1:
        return {"mean": mean, "ci_low": mean, "ci_high": mean, "n": 1}
    half = float(t.ppf(0.5 + level / 2, n - 1) * x.std(ddof=1) / np.sqrt(n))
    return {"mean": mean, "ci_low": mean - half, "ci_high": mean + half, "n": n}


def pir_values(arm: Sequence[float], full: Sequence[float], metric: str) -> np.ndarray:
    """Per-seed performance-improvement ratios, paired by seed position:
    arm / full for scores, full / arm for losses (so > 1 is better either way).
    A single-valued side (e.g. the untuned base) is paired with every value."""
    a = np.asarray(arm, dtype=np.float64)
    f = np.asarray(full, dtype=np.float64)
    if a.size == 1 or f.size == 1:
        a, f = np.broadcast_arrays(a, f)
    else:
        k = min(a.size, f.size)
        a, f = a[:k], f[:k]
    with np.errstate(divide="ignore", invalid="ignore"):
        return a / f if higher_is_better(metric) else f / a


def summarize(runs: list[dict], metrics: Sequence[str], level: float = 0.95) -> dict[str, dict]:
    """{metric: {mean, ci_low, ci_high, n}} over the runs' metric values."""
    return {m: t_interval([r["metrics"].get(m) for r in runs], level) for m in metrics}


def pir_summary(runs: list[dict], full_runs: list[dict] | None, metrics: Sequence[str],
                level: float = 0.95) -> dict[str, dict]:
    """{metric: {mean, ci_low, ci_high}} of the per-seed PIR against `full_runs` (empty without a full arm)."""
    if not full_runs:
        return {}
    out = {}
    for m in metrics:
        ratios = pir_values([r["metrics"].get(m, np.nan) for r in runs],
                            [r["metrics"].get(m, np.nan) for r in full_runs], m)
        s = t_interval(ratios.tolist(), level)
        out[m] = {"mean": s["mean"], "ci_low": s["ci_low"], "ci_high": s["ci_high"]}
    return out


def mean_per_class_f1(per_class: list[dict | None]) -> dict[str, float] | None:
    """{label: mean F1 over runs} from each run's per-class metrics."""
    rows = [pc for pc in per_class if pc]
    if not rows:
        return None
    labels = sorted({label for pc in rows for label in pc})
    return {label: float(np.mean([pc[label]["f1"] for pc in rows if label in pc])) for label in labels}


def summed_confusion(confusions: list[dict | None]) -> dict | None:
    """Confusion matrices of the runs added up (same label order required)."""
    rows = [c for c in confusions if c]
    if not rows or any(c["labels"] != rows[0]["labels"] for c in rows):
        return rows[0] if rows else None
    total = np.sum([np.asarray(c["matrix"]) for c in rows], axis=0)
    return {"labels": list(rows[0]["labels"]), "matrix": total.astype(int).tolist()}


def fmt_ci(s: dict | None, digits: int = 4) -> str:
    """`0.812 [0.790, 0.834]` (or just the mean when n <= 1)."""
    if not s or s.get("mean") is None or not np.isfinite(s["mean"]):
        return "-"
    if s.get("n", 2) <= 1 or s["ci_low"] == s["ci_high"]:
        return f"{s['mean']:.{digits}g}"
    return f"{s['mean']:.{digits}g} [{s['ci_low']:.{digits}g}, {s['ci_high']:.{digits}g}]"


def text_table(header: Sequence[str], rows: list[Sequence[Any]]) -> str:
    """A fixed-width plain-text table."""
    cells = [[str(h) for h in header]] + [[str(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines) + "\n"


def check_out_dir(out_dir: Path, overwrite: bool) -> None:
    """Refuse to replace an earlier results.json unless `overwrite`."""
    if (Path(out_dir) / "results.json").exists() and not overwrite:
        raise OutputExistsError(f"{Path(out_dir) / 'results.json'} exists; pass --overwrite to replace it")


def write_results(out_dir: str | Path, results: dict, table: str, overwrite: bool = False) -> Path:
    """Write `results.json` and `table.txt` into `out_dir`, each atomically."""
    from thresher.data.writers import write_bytes_atomic

    out_dir = Path(out_dir)
    check_out_dir(out_dir, overwrite)
    out_dir.mkdir(parents=True, exist_ok=True)
    body = json.dumps(_jsonable(results), indent=2, ensure_ascii=False, allow_nan=False) + "\n"
    write_bytes_atomic(out_dir / "table.txt", table.encode("utf-8"))
    write_bytes_atomic(out_dir / "results.json", body.encode("utf-8"))
    return out_dir / "results.json"
