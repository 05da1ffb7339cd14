"""Report sections for evaluation results: compare arms (PIR/SDF, per-class F1,
confusion matrices), learning curves and active-learning trajectories."""
from __future__ import annotations

from typing import Any

import numpy as np

from thresher.report.blocks import Section
from thresher.report.markup import fmt, table, tag

MAX_CONFUSION = 4  # arms with a confusion matrix drawn


def _section(id_: str, title: str):
    return Section(id_, title)


def _results(data, kind: str) -> list[dict[str, Any]]:
    return [r for r in data.results if r.get("kind") == kind]


def _ci(stat: dict | None) -> str:
    if not stat:
        return "–"
    mean, low, high = stat.get("mean"), stat.get("ci_low"), stat.get("ci_high")
    if low is None or high is None:
        return fmt(mean)
    return f"{fmt(mean)} [{fmt(low)}, {fmt(high)}]"


def compare_section(data, figs):
    from thresher.report.figures import confusion, per_class_f1, pir_sdf

    s = _section("compare", "Evaluation: PIR / SDF, per-class F1, confusion")
    results = _results(data, "compare")
    if not results:
        s.absent = "RUN holds no compare results (results.json with kind 'compare'); run `thresher compare`"
        return s
    for res in results:
        arms, metrics = res.get("arms") or [], list(res.get("metrics") or [])
        if not arms:
            s.body.append(tag("p", "The compare results hold no arms.", class_="absent"))
            continue
        metrics = metrics or sorted({m for a in arms for m in (a.get("summary") or {})})
        header = ["arm", "rows", "tokens", "SDF"] + [f"{m} (95% CI)" for m in metrics] + [f"PIR {m}" for m in metrics]
        rows = [[a.get("name"), fmt(a.get("rows")), fmt(a.get("tokens")), fmt(a.get("sdf"), 3)]
                + [_ci((a.get("summary") or {}).get(m)) for m in metrics]
                + [_ci((a.get("pir") or {}).get(m)) for m in metrics] for a in arms]
        s.body.append(tag("p", f"Pool {fmt(res.get('pool_rows'))} rows, evaluation {fmt(res.get('eval_rows'))} rows; "
                               "PIR = score(arm) / score(full pool), SDF = the arm's share of the pool."))
        s.body.append(table(header, rows, caption="Arms"))
        if res.get("command"):
            s.body.append(tag("p", "Command: ", tag("code", res["command"])))
        with_pir = [a for a in arms if metrics and (a.get("pir") or {}).get(metrics[0]) and a.get("sdf") is not None
                    and (a["pir"][metrics[0]].get("mean") is not None)]
        if with_pir:
            s.figures.append(figs.make(pir_sdf(with_pir, metrics[0]), "pir-sdf", f"PIR vs SDF ({metrics[0]})",
                                       "Each arm's performance-improvement ratio against its data fraction, "
                                       "with the interval over seeds; dotted: the full-pool score."))
        _per_class(s, arms, figs, per_class_f1)
        panels = [(str(a.get("name")), a["confusion"]["labels"], np.asarray(a["confusion"]["matrix"], dtype=float))
                  for a in arms if _confusion_ok(a.get("confusion"))][:MAX_CONFUSION]
        if panels:
            s.figures.append(figs.make(confusion(panels), "confusion", "Confusion matrices",
                                       "Rows: true class; columns: predicted; shade: share of the true class"
                                       + (f"; the first {MAX_CONFUSION} arms." if len(panels) == MAX_CONFUSION else ".")))
    return s


def _confusion_ok(c: dict | None) -> bool:
    if not c or not c.get("labels"):
        return False
    m = np.asarray(c.get("matrix") or [], dtype=float)
    return m.ndim == 2 and m.shape == (len(c["labels"]), len(c["labels"]))


def _per_class(s, arms, figs, per_class_f1) -> None:
    scored = [(a.get("name"), a["per_class_f1"]) for a in arms if a.get("per_class_f1")]
    if not scored:
        s.body.append(tag("p", "No per-class F1 in these results (not a labelled task).", class_="absent"))
        return
    classes = sorted({c for _, f1 in scored for c in f1})
    s.figures.append(figs.make(per_class_f1(classes, scored), "per-class-f1", "Per-class F1",
                               "F1 of each class for each arm."))
    s.body.append(table(["class"] + [n for n, _ in scored],
                        [[c] + [fmt(f1.get(c), 3) for _, f1 in scored] for c in classes], caption="Per-class F1"))


def curve_section(data, figs):
    from thresher.report.figures import learning_curve

    s = _section("curve", "Learning curve")
    results = _results(data, "curve")
    if not results:
        s.absent = "RUN holds no learning-curve results (results.json with kind 'curve'); run `thresher curve`"
        return s
    for res in results:
        points = [p for p in res.get("points") or [] if p.get("rows") is not None and p.get("value") is not None]
        if not points:
            s.body.append(tag("p", "The curve results hold no points.", class_="absent"))
            continue
        metric = res.get("metric") or "metric"
        fit_x, fit_y, fit_note = _fit_line(res.get("fit"), points, res.get("extrapolation") or [])
        fig = learning_curve(points, metric, fit_x, fit_y, res.get("extrapolation") or [])
        s.figures.append(figs.make(fig, "learning-curve", f"Learning curve ({metric})",
                                   "Metric against training rows; squares: extrapolated values with their "
                                   "interval. " + fit_note))
        verdict = "has plateaued" if res.get("plateaued") else "is still rising"
        s.body.append(tag("p", tag("strong", f"The curve {verdict}. "), res.get("recommendation") or ""))
        fit = res.get("fit") or {}
        if fit:
            s.body.append(table(["parameter", "value", "95% CI"],
                                [[k, fmt(fit.get(k)), _pair(fit.get(f"{k}_ci"))] for k in ("a", "b", "c")],
                                caption="Power-law fit err(n) = a·n^(−b) + c"))
        ext = res.get("extrapolation") or []
        if ext:
            s.body.append(table(["× data", "rows", metric, "interval"],
                                [[fmt(e.get("factor")), fmt(e.get("rows")), fmt(e.get("value")),
                                  f"[{fmt(e.get('ci_low'))}, {fmt(e.get('ci_high'))}]"] for e in ext],
                                caption="Extrapolation"))
    return s


def _pair(ci) -> str:
    return f"[{fmt(ci[0])}, {fmt(ci[1])}]" if isinstance(ci, (list, tuple)) and len(ci) == 2 else "–"


def _fit_line(fit: dict | None, points: list[dict], ext: list[dict]):
    """The fitted curve on the metric's scale: the fit is of an error a·n^(−b) + c,
    which is the metric itself (a loss) or 1 − metric (an accuracy); the closer one is drawn."""
    try:
        a, b, c = (float(fit[k]) for k in ("a", "b", "c"))
    except (TypeError, KeyError, ValueError):
        return None, None, "No fit in the results."
    rows = np.array([p["rows"] for p in points], dtype=float)
    values = np.array([p["value"] for p in points], dtype=float)
    err = a * np.power(rows, -b) + c
    as_is, flipped = np.mean(np.abs(err - values)), np.mean(np.abs(1 - err - values))
    spread = max(float(np.ptp(values)), 1e-9)
    if min(as_is, flipped) > 2 * spread:
        return None, None, "The fit does not match the points' scale, so it is not drawn."
    top = max([rows.max()] + [float(e.get("rows") or 0) for e in ext])
    x = np.geomspace(rows.min(), top, 100)
    y = a * np.power(x, -b) + c
    return x, (y if as_is <= flipped else 1 - y), ("Dashed: the fitted power law (as 1 − error)."
                                                     if flipped < as_is else "Dashed: the fitted power law.")


def active_section(data, figs):
    from thresher.report.figures import active_curves

    s = _section("active", "Active learning")
    traj = data.trajectory
    if not traj or not traj.get("strategies"):
        s.absent = "RUN holds no active-learning trajectory (trajectory.json); run `thresher active`"
        return s
    metric = traj.get("metric") or "accuracy"
    lines, rows = [], []
    for name, st in traj["strategies"].items():
        mean = np.asarray(st.get("mean") or [], dtype=float)
        if not len(mean):
            continue
        low = np.asarray(st.get("ci_low") or mean, dtype=float)
        high = np.asarray(st.get("ci_high") or mean, dtype=float)
        seeds = st.get("seeds") or []
        x = _labeled(seeds, len(mean))
        lines.append((name, x, mean, low, high))
        stops = sorted({str(r.get("stopped_reason")) for sd in seeds for r in sd.get("rounds") or []
                        if r.get("stopped_reason")})
        rows.append([name, fmt(len(seeds)), fmt(len(mean)), fmt(int(x[-1])) if len(x) else "–",
                     f"{fmt(mean[-1])} [{fmt(low[-1])}, {fmt(high[-1])}]", "; ".join(stops) or "–"])
    if not lines:
        s.absent = "the trajectory holds no rounds"
        return s
    s.figures.append(figs.make(active_curves(lines, metric), "active", f"Active learning ({metric})",
                               "Mean over seeds per round with its interval band; x: labeled rows."))
    s.body.append(tag("p", f"Label field: {traj.get('label_field', '–')}."))
    s.body.append(table(["strategy", "seeds", "rounds", "labeled (last)", f"{metric} (last, CI)", "stopped"], rows))
    return s


def _labeled(seeds: list[dict], n: int) -> np.ndarray:
    """Mean labeled rows per round over seeds (round numbers when absent)."""
    per_round = [[r.get("labeled") for r in sd.get("rounds") or []] for sd in seeds]
    x = np.full(n, np.nan)
    for i in range(n):
        vals = [p[i] for p in per_round if i < len(p) and p[i] is not None]
        if vals:
            x[i] = float(np.mean(vals))
    return np.where(np.isfinite(x), x, np.arange(n, dtype=float))
