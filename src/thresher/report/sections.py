"""The report's sections on a subset and its pool: overview, category
distribution, scores with thresholds, embedding map, recipe trace and
representativeness. Each returns a `Section`; one that cannot be drawn says why."""
from __future__ import annotations

from typing import Any

import numpy as np

from thresher.report.collect import RunData, pool_features, step_features
from thresher.report.blocks import Figures, Section
from thresher.report.markup import Markup, fmt, join, pre_json, short, table, tag

MAX_CATEGORIES = 30  # bars; the table lists up to MAX_TABLE_ROWS
MAX_TABLE_ROWS = 100
MAX_HISTOGRAMS = 9
SELECTED_EXAMPLES = 5
DEFAULT_SCORES = ("response_words",)


def _subset_absent(data: RunData) -> str | None:
    """Why the subset-vs-pool sections cannot be drawn (None when they can)."""
    if data.manifest is None:
        return "RUN holds no subset manifest (*.manifest.json), only evaluation results"
    if data.pool is None:
        return data.pool_note or "the pool could not be read"
    if data.selected is None:
        return "the manifest does not say which rows were selected"
    return None


def overview_section(data: RunData) -> Section:
    s = Section("overview", "Overview")
    m = data.manifest
    if m is None:
        s.body.append(tag("p", f"Results from {data.source}."))
    else:
        info, output = m.get("input") or {}, m.get("output") or {}
        rows = [["command", m.get("command")], ["method", m.get("method")], ["seed", m.get("seed")],
                ["input", info.get("path")], ["input sha256", info.get("sha256")],
                ["input format", f"{info.get('format')} / {info.get('record_format')}"],
                ["pool rows", fmt(info.get("rows"))], ["selected rows", fmt(output.get("rows"))],
                ["output", output.get("path")], ["thresher version", m.get("thresher_version")]]
        if data.pool is not None:
            rows.append(["pool fields", ", ".join(data.pool.fields)])
        s.body.append(tag("div", tag("div", table(None, rows, class_="kv")),
                          tag("div", tag("h3", "Parameters"), pre_json(m.get("params")),
                              tag("h3", "Diagnostics"), pre_json(m.get("diagnostics") or {})), class_="cols"))
    if not _subset_absent(data) and len(data.selected):
        first = np.unique(data.selected)[:SELECTED_EXAMPLES]
        ids = data.pool.ids_of(first).tolist()
        s.body += [tag("h3", f"The first {len(first)} selected rows"),
                   table(["id", "prompt", "response"],
                         [[rid, short(p), short(r)] for rid, (p, r) in zip(ids, _canonical(data.pool, first))])]
    notes = list(data.notes) + ([data.pool_note] if data.pool_note else [])
    if notes:
        s.body.append(tag("ul", *(tag("li", n, class_="note") for n in notes)))
    return s


def categories_section(data: RunData, field_name: str | None, why: str, figs: Figures) -> Section:
    from thresher.report.figures import category_bars

    s = Section("categories", "Category distribution: pool vs selected")
    s.absent = _subset_absent(data) or (None if field_name else why)
    if s.absent:
        return s
    try:
        codes, labels = _categories(data.pool, field_name)
    except Exception as err:  # noqa: BLE001
        s.absent = f"'{field_name}' cannot be used as a category ({err})"
        return s
    pool_counts = np.bincount(codes, minlength=len(labels))
    sel_counts = np.bincount(codes[data.selected], minlength=len(labels))
    order = np.lexsort((np.arange(len(labels)), -pool_counts))
    shown = order[:MAX_CATEGORIES]
    names = [labels[i] for i in shown]
    pc, sc = pool_counts[shown], sel_counts[shown]
    if len(order) > MAX_CATEGORIES:
        rest = order[MAX_CATEGORIES:]
        names.append(f"({len(rest)} other categories)")
        pc, sc = np.r_[pc, pool_counts[rest].sum()], np.r_[sc, sel_counts[rest].sum()]
    fig = category_bars(names, pc, sc, field_name)
    s.figures.append(figs.make(fig, "categories", f"Share of rows per {field_name}",
                               f"Field '{field_name}' ({why}); {len(labels)} categories."))
    n_pool, n_sel = max(pool_counts.sum(), 1), max(sel_counts.sum(), 1)
    rows = [[labels[i], fmt(int(pool_counts[i])), f"{100 * pool_counts[i] / n_pool:.1f}%", fmt(int(sel_counts[i])),
             f"{100 * sel_counts[i] / n_sel:.1f}%", f"{100 * (sel_counts[i] / n_sel - pool_counts[i] / n_pool):+.1f}"]
            for i in order[:MAX_TABLE_ROWS]]
    s.body.append(table([field_name, "pool rows", "pool share", "selected", "selected share", "diff (pts)"], rows))
    if len(order) > MAX_TABLE_ROWS:
        s.body.append(tag("p", f"… {len(order) - MAX_TABLE_ROWS} more categories.", class_="absent"))
    return s


def _categories(pool, name: str) -> tuple[np.ndarray, list[str]]:
    if name not in pool.fields:
        from thresher.features.columns import attach_features

        pool = attach_features(pool, [name])
    return pool.categorical([name])


def scores_section(data: RunData, cache_dir: str | None, figs: Figures) -> Section:
    from thresher.report.figures import score_histograms

    s = Section("scores", "Scores and thresholds")
    s.absent = _subset_absent(data)
    if s.absent:
        return s
    used, thresholds = step_features(data)
    chosen = used or list(DEFAULT_SCORES)
    values, notes = pool_features(data.pool, chosen[:MAX_HISTOGRAMS], cache_dir)
    numeric = {k: v.astype(np.float64) for k, v in values.items()
               if v.ndim == 1 and (np.issubdtype(v.dtype, np.number) or v.dtype == bool)}
    notes += [f"'{k}' is not numeric; not plotted" for k in values if k not in numeric]
    if not numeric:
        s.absent = "no numeric feature to plot" + (f": {'; '.join(notes)}" if notes else "")
        return s
    cols = {k: (v.astype(np.float64), v[data.selected].astype(np.float64)) for k, v in numeric.items()}
    fig = score_histograms(cols, thresholds)
    where = "features the steps used" if used else "no step used a score; response length shown"
    s.figures.append(figs.make(fig, "scores", "Score distributions",
                               f"Densities, pool (grey) vs selected (orange); {where}. Dashed: thresholds."))
    rows = [[k, fmt(float(np.nanmean(p))), fmt(float(np.nanmedian(p))), fmt(float(np.nanmean(q)) if len(q) else None),
             fmt(float(np.nanmedian(q)) if len(q) else None)] for k, (p, q) in cols.items()]
    s.body.append(table(["feature", "pool mean", "pool median", "selected mean", "selected median"], rows))
    if thresholds:
        s.body.append(table(["step", "rule"], [[t["step"], f"{t['feature']} {t['op']} {t['value']:g}"]
                                               for t in thresholds], caption="Thresholds"))
    if notes:
        s.body.append(tag("ul", *(tag("li", n, class_="note") for n in notes)))
    return s


def embeddings(data: RunData, cache_dir: str | None) -> tuple[np.ndarray | None, str | None]:
    if _subset_absent(data):
        return None, _subset_absent(data)
    values, notes = pool_features(data.pool, ["embedding"], cache_dir)
    emb = values.get("embedding")
    if emb is None or emb.ndim != 2:
        return None, "no embeddings: " + ("; ".join(notes) or "the static embedder gave none")
    return emb, None


def embedding_section(data: RunData, emb, note, seed: int, max_points: int, figs: Figures) -> Section:
    from thresher.core.rng import make_rng
    from thresher.report.figures import embedding_map

    s = Section("embedding", "Embedding map")
    if emb is None:
        s.absent = note
        return s
    n = len(emb)
    rows = np.sort(make_rng(seed).choice(n, size=max_points, replace=False)) if n > max_points else np.arange(n)
    xy, variance = pca2(emb[rows])
    selected = np.isin(rows, data.selected)
    fig = embedding_map(xy, selected, variance)
    drawn = f"a seeded random {len(rows):,} of {n:,} rows" if n > len(rows) else f"all {n:,} rows"
    s.figures.append(figs.make(fig, "embedding", "Embedding map (PCA)",
                               f"First two principal components of the static embeddings of {drawn} "
                               f"(seed {seed}); {int(selected.sum()):,} of them selected."))
    return s


def pca2(x: np.ndarray) -> tuple[np.ndarray, list[float]]:
    """Rows projected on their first two principal components, and each one's share of the variance."""
    from threadpoolctl import threadpool_limits

    x = np.asarray(x, dtype=np.float64)
    x = x - x.mean(axis=0)
    with threadpool_limits(1):  # a d x d eigenproblem; BLAS threads only contend here
        values, vectors = np.linalg.eigh(x.T @ x)
    order = np.argsort(values)[::-1][:2]
    total = float(values.clip(min=0).sum()) or 1.0
    shares = [float(max(values[i], 0) / total) for i in order] + [0.0] * (2 - len(order))
    xy = x @ vectors[:, order]
    if xy.shape[1] < 2:
        xy = np.column_stack([xy, np.zeros((len(xy), 2 - xy.shape[1]))])
    return xy, shares


def trace_section(data: RunData, figs: Figures) -> Section:
    from thresher.report.figures import funnel

    s = Section("trace", "Recipe trace")
    trace = data.trace
    if not trace:
        s.absent = ("RUN holds no subset manifest" if data.manifest is None else
                    "the manifest has no trace (a `thresher sample` design is one step; no rows were "
                    "removed by filters)")
        return s
    steps = [("pool", trace[0]["rows_in"])] + [(f"{i + 1}. {t['step']}", t["rows_out"]) for i, t in enumerate(trace)]
    s.figures.append(figs.make(funnel(steps), "funnel", "Rows after each step",
                               "Rows left after each step; in brackets, rows it removed."))
    rows = []
    for i, t in enumerate(trace):
        reasons = tag("ul", *(tag("li", f"{r}: {c:,}") for r, c in (t.get("removed") or {}).items())) \
            if t.get("removed") else "–"
        rows.append([f"{i + 1}. {t['step']}", short(_params_text(t.get("params")), 120), fmt(t["rows_in"]),
                     fmt(t["rows_out"]), reasons])
    s.body.append(table(["step", "parameters", "rows in", "rows out", "removed (reason: rows)"], rows))
    s.body.append(_removed_examples(data))
    return s


def _params_text(params: Any) -> str:
    return ", ".join(f"{k}={v}" for k, v in (params or {}).items())


def _removed_examples(data: RunData) -> Markup:
    """A few removed rows per reason: from the removed-rows file, else looked up in the pool."""
    rank = {(t["step"], reason): i for i, t in enumerate(data.trace) for reason in (t.get("removed") or {})}
    removed = sorted(data.removed_rows, key=lambda r: rank.get((r.get("step"), r.get("reason")), len(rank)))
    rows = [[r.get("step"), r.get("reason"), r.get("id"), *_prompt_response(r.get("row") or {}, data)]
            for r in removed]
    if not rows and data.pool is not None:
        ids = {}
        for t in data.trace:
            for reason, examples in (t.get("removed_examples") or {}).items():
                for rid in examples[:3]:
                    ids.setdefault(str(rid), (t["step"], reason))
        pos = _lookup(data.pool, list(ids))
        if pos:
            canon = _canonical(data.pool, np.array(list(pos.values()), dtype=np.int64))
            rows = [[*ids[rid], rid, short(p), short(r)] for rid, (p, r) in zip(pos, canon)]
    if not rows:
        return tag("p", "No removed rows to show (the pool is unavailable and no removed-rows file "
                        "was written; pass --keep-removed to keep them).", class_="absent")
    return join([tag("h3", "Examples of removed rows"),
                 table(["step", "reason", "id", "prompt", "response"], rows)])


def _prompt_response(record: dict, data: RunData) -> list[str]:
    """Prompt and response of a raw removed record (format-aware via a one-row Dataset)."""
    from thresher.data.dataset import Dataset

    fmt_name = data.pool.source.record_format if data.pool is not None else \
        ((data.manifest or {}).get("input") or {}).get("record_format")
    try:
        ds = Dataset.from_records([record], record_format=fmt_name if fmt_name not in (None, "unknown") else None)
        return [short(ds.column("prompt")[0].as_py()), short(ds.column("response")[0].as_py())]
    except Exception:  # noqa: BLE001  (an odd record is shown raw)
        return [short(record, 300), ""]


def _lookup(pool, ids: list[str]) -> dict[str, int]:
    if not ids:
        return {}
    pool_ids = np.asarray(pool.ids, dtype=str)
    hits = np.flatnonzero(np.isin(pool_ids, np.asarray(ids, dtype=str)))
    found = {}
    for pos, rid in zip(hits.tolist(), pool_ids[hits].tolist()):
        found.setdefault(rid, pos)
    return {rid: found[rid] for rid in ids if rid in found}


def _canonical(pool, rows: np.ndarray) -> list[tuple[str, str]]:
    sub = pool.take(rows)
    try:
        return list(zip(sub.column("prompt").to_pylist(), sub.column("response").to_pylist()))
    except Exception:  # noqa: BLE001  (no record format: show the first columns)
        recs = sub.table.to_pylist()
        return [(str(r), "") for r in recs]


def representativeness_section(data: RunData, field_name: str | None, emb, seed: int) -> Section:
    from thresher.sampling.check import check_representativeness

    s = Section("representativeness", "Representativeness of the subset")
    s.absent = _subset_absent(data)
    if s.absent:
        return s
    if not len(data.selected):
        s.absent = "the subset is empty"
        return s
    subset = data.pool.take(data.selected)
    by = [field_name] if field_name and field_name in data.pool.fields else None
    weights = _weights(data)
    try:
        report = check_representativeness(
            subset, data.pool, by=by, embeddings=(emb[data.selected], emb) if emb is not None else None,
            weights=weights, fpc=len(np.unique(data.selected)) == len(data.selected), random_state=seed)
    except Exception as err:  # noqa: BLE001  (a check that cannot run is explained, not fatal)
        s.absent = f"the check could not run ({err})"
        return s
    rows = [[f.field, f.kind, tag("span", f.verdict, class_=f.verdict), f.summary(),
             "; ".join(f.reasons) or "no significant difference"] for f in report.fields]
    s.body += [tag("p", "Overall: ", tag("span", report.overall, class_=report.overall),
                   f" — subset of {report.n_subset:,} rows vs pool of {report.n_pool:,}"
                   + (" (weighted by 1/pi)" if report.weighted else "") + "."),
               table(["field", "kind", "verdict", "statistics", "why"], rows)]
    if report.notes:
        s.body.append(tag("ul", *(tag("li", n) for n in report.notes)))
    return s


def _weights(data: RunData) -> np.ndarray | None:
    w = (data.manifest or {}).get("weights")
    if not w or len(w) != len(data.selected) or any(v is None for v in w):
        return None
    return np.asarray(w, dtype=np.float64)
