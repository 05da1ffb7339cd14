"""`thresher active`: pool-based active learning (simulation with an oracle, or one interactive round)."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Optional

import typer

from thresher.cli.common import (FieldMapOpt, FormatOpt, InputFormatOpt, console, escape_data, print_json,
                                 read_input, split_list)
from thresher.cli.common import JsonOpt, QuietOpt
from thresher.errors import UsageError

TRAJECTORY = "trajectory.json"
CURVE_PNG = "learning_curve.png"


def register(app: typer.Typer) -> None:
    @app.command("active")
    def active_cmd(
        data: str = typer.Argument(..., help="The pool."),
        simulate: bool = typer.Option(False, "--simulate", help="Simulate with --label-field as the oracle and compare strategies."),
        label_field: Optional[str] = typer.Option(None, "--label-field", help="Field holding the labels (oracle in --simulate; read from --labeled otherwise)."),
        strategies: str = typer.Option("random,entropy,hybrid", "--strategies", help="simulate: comma-separated random|least-confidence|margin|entropy|kcenter|hybrid."),
        strategy: Optional[str] = typer.Option(None, "--strategy", help="interactive: the query strategy (default entropy; fixed by the state once saved)."),
        seeds: int = typer.Option(3, "--seeds", help="simulate: number of seeds (seed, seed+1, ...)."),
        seed: Optional[int] = typer.Option(None, "--seed", help="Seed for every random choice (default 0)."),
        batch: Optional[int] = typer.Option(None, "--batch", help="Rows to label per round (default 20)."),
        initial: Optional[int] = typer.Option(None, "--initial", help="simulate: cold-start size (default: --batch)."),
        max_labels: Optional[int] = typer.Option(None, "--max-labels", help="Label budget (simulate default 200)."),
        max_rounds: Optional[int] = typer.Option(None, "--max-rounds", help="Round budget (simulate: turned into labels)."),
        cold_start: str = typer.Option("kmeans", "--cold-start", help="kmeans (medoids of the embeddings) | random | stratified (interactive, with --by)."),
        by: Optional[str] = typer.Option(None, "--by", help="stratified cold start: field(s) to stratify the seed set on."),
        min_count: int = typer.Option(0, "--min-count", help="simulate: keep only labels with at least this many rows."),
        test_fraction: float = typer.Option(0.25, "--test-fraction", help="simulate: held-out share per class."),
        stop_set: int = typer.Option(1000, "--stop-set", help="Rows in the fixed stop set for the kappa rule."),
        uncertainty: str = typer.Option("entropy", "--uncertainty", help="hybrid: least-confidence|margin|entropy."),
        factor: int = typer.Option(5, "--factor", help="hybrid: candidates = factor x batch most uncertain rows."),
        patience: int = typer.Option(3, "--patience", help="plateau rule: rounds without gain."),
        min_delta: float = typer.Option(0.005, "--min-delta", help="plateau rule: a gain must exceed this to count."),
        kappa: float = typer.Option(0.99, "--kappa", help="stabilizing-predictions rule: kappa threshold."),
        kappa_rounds: int = typer.Option(3, "--kappa-rounds", help="stabilizing-predictions rule: rounds in a row."),
        reach: float = typer.Option(0.9, "--reach", help="simulate: report labels needed to reach this fraction of the full-data score."),
        metric: str = typer.Option("accuracy", "--metric", help="simulate: accuracy|macro_f1 (curves, plateau, reach)."),
        C: float = typer.Option(10.0, "--C", help="Inverse L2 strength of the logistic learner."),
        learner: str = typer.Option("logistic", "--learner", help="simulate: logistic (on embeddings) | lm (on a small LM's label log-probs)."),
        label_set: Optional[str] = typer.Option(None, "--label-set", help="lm learner: candidate label strings, comma-separated (default: the field's values)."),
        model: Optional[str] = typer.Option(None, "--model", help="lm learner: local HF model folder (default: bundled SmolLM2-135M-Instruct)."),
        state: Optional[Path] = typer.Option(None, "--state", help="interactive: directory holding the session state."),
        labeled: Optional[str] = typer.Option(None, "--labeled", help="interactive: file with the labeled batch (ids + --label-field)."),
        output: Optional[Path] = typer.Option(None, "-o", "--output", help="simulate: output directory; interactive: the next batch file."),
        cache: Optional[str] = typer.Option(None, "--cache", help="Feature cache directory (embeddings)."),
        record_format: Optional[str] = FormatOpt,
        field_map: Optional[str] = FieldMapOpt,
        input_format: Optional[str] = InputFormatOpt,
        overwrite: bool = typer.Option(False, "--overwrite", help="Replace existing outputs."),
        as_json: bool = JsonOpt,
        quiet: bool = QuietOpt,
    ) -> None:
        """Active learning: --simulate compares strategies with labels as oracle; --state runs one interactive round."""
        seed_given, seed = seed, (0 if seed is None else seed)
        pool = read_input(data, record_format, field_map, input_format).dataset
        if simulate:
            if state is not None or labeled is not None:
                raise UsageError("--simulate runs on its own; drop --state / --labeled")
            if not label_field:
                raise UsageError("--simulate needs --label-field FIELD (the oracle)")
            if output is None:
                raise UsageError("--simulate needs -o DIR for trajectory.json and the learning-curve PNG")
            batch_n = 20 if batch is None else batch
            budget = 200 if max_labels is None else max_labels
            if max_rounds is not None:
                budget = min(budget, (initial or batch_n) + max_rounds * batch_n)
            from thresher.active.loop import ActiveSimulator

            sim = ActiveSimulator(split_list(strategies), seeds=seeds, seed=seed, batch=batch_n, initial=initial,
                                  max_labels=budget, cold_start=cold_start, test_fraction=test_fraction,
                                  stop_set=stop_set, uncertainty=uncertainty, factor=factor, patience=patience,
                                  min_delta=min_delta, kappa=kappa, kappa_window=kappa_rounds, metric=metric, C=C,
                                  reach=reach)
            lm = {"label_set": split_list(label_set), "model": model} if learner == "lm" else None
            if learner not in ("logistic", "lm"):
                raise UsageError(f"--learner must be logistic or lm, got {learner!r}")
            _simulate(pool, sim, label_field, min_count, output, cache, overwrite, as_json, quiet, lm)
            return
        if learner != "logistic":
            raise UsageError("--learner lm is only available with --simulate")
        if state is None:
            raise UsageError("give --simulate --label-field F -o DIR, or --state DIR -o NEXT.jsonl "
                             "for an interactive round")
        if output is None:
            raise UsageError("an interactive round needs -o FILE for the next batch to label")
        params = {"cold_start": cold_start, "by": split_list(by) or None, "max_labels": max_labels,
                  "max_rounds": max_rounds, "stop_set": stop_set, "uncertainty": uncertainty, "factor": factor,
                  "kappa": kappa, "kappa_window": kappa_rounds, "C": C}
        _interactive(pool, state, output, labeled, label_field, strategy, seed_given, batch, params, cache, overwrite,
                     as_json, quiet)


# -- simulation -------------------------------------------------------------------

def _simulate(pool, sim, label_field: str, min_count: int, out_dir: Path, cache, overwrite: bool, as_json: bool,
              quiet: bool, lm: Optional[dict] = None) -> None:
    import numpy as np

    from thresher.active.learners import pool_embeddings
    from thresher.data.writers import atomic_path, check_output_path

    traj_path, png_path = out_dir / TRAJECTORY, out_dir / CURVE_PNG
    for target in (traj_path, png_path):
        check_output_path(target, [pool.source.path], overwrite)
    y = np.asarray(pool.column(label_field).to_pylist(), dtype=object)
    keep = np.array([v is not None and str(v).strip() != "" for v in y], dtype=bool)
    labels, counts = np.unique(y[keep].astype(str), return_counts=True)
    keep &= np.isin(y.astype(str), labels[counts >= min_count])
    if keep.sum() < 2:
        raise UsageError(f"too few rows with a '{label_field}' label (min count {min_count}) to simulate")
    X = pool_embeddings(pool, cache_dir=cache)[keep]
    if lm is not None:
        sim.learner = _lm_learner(pool, keep, lm["label_set"] or labels[counts >= min_count].tolist(), lm["model"],
                                  sim.C, quiet or as_json)
    traj = _run_with_progress(sim, X, y[keep].astype(str), label_field, quiet or as_json)
    if lm is not None:
        traj["params"].update(learner="lm", model=lm["model"] or "smollm2")
    traj["data"] = {"path": pool.source.path, "rows_used": int(keep.sum()), "rows_dropped": int((~keep).sum()),
                    "min_count": min_count, "classes_used": int(np.sum(counts >= min_count))}
    with atomic_path(traj_path) as tmp:
        tmp.write_text(json.dumps(traj, indent=1) + "\n", encoding="utf-8")
    plot_trajectory(traj, png_path)
    summary = {"trajectory": str(traj_path), "plot": str(png_path), "rows_used": traj["data"]["rows_used"],
               "classes": traj["classes"], "reach": {n: s["reach"] for n, s in traj["strategies"].items()},
               "final": {n: s["mean"][-1] for n, s in traj["strategies"].items()}}
    if as_json:
        print_json(summary)
    elif not quiet:
        print_budget_table(traj)
        console.print(f"trajectory -> {escape_data(traj_path)}; learning curve -> {escape_data(png_path)}")


def _lm_learner(pool, keep, label_set: list[str], model: Optional[str], C: float, silent: bool):
    """A factory for LMLearner over label log-probs computed once for the kept rows."""
    import numpy as np

    from thresher.active.learners import LMLearner, lm_label_features

    if len(label_set) > 10 and not silent:
        console.print(f"[yellow]warning[/]: scoring {len(label_set)} labels per row with the LM is slow and "
                      f"works best for short label words; consider --label-set")
    prompts = np.asarray(pool.column("prompt").to_pylist(), dtype=object)[keep].tolist()
    if not silent:
        console.print(f"scoring {len(prompts)} rows x {len(label_set)} labels with the LM ...")
    feats = lm_label_features(prompts, label_set, model_path=model)
    return lambda X: LMLearner(feats, C=C)


def _run_with_progress(sim, X, y, label_field: str, silent: bool) -> dict:
    if silent:
        return sim.run(X, y, label_field=label_field)
    from rich.progress import Progress

    with Progress(console=console, transient=True) as bar:
        task = bar.add_task("simulating", total=len(sim.strategies) * sim.seeds)
        return sim.run(X, y, label_field=label_field, progress=lambda done, total: bar.update(task, completed=done))


def table_positions(labeled: list[int], most: int = 12) -> list[int]:
    """At most `most` round positions, evenly spread, first and last included."""
    if len(labeled) <= most:
        return list(range(len(labeled)))
    import numpy as np

    return sorted(set(np.linspace(0, len(labeled) - 1, most).round().astype(int).tolist()))


def print_budget_table(traj: dict[str, Any]) -> None:
    """Rich table: mean score (95% CI half-width) per strategy at each budget, then labels-to-reach."""
    from rich.table import Table

    names = list(traj["strategies"])
    first = traj["strategies"][names[0]]
    title = f"{escape_data(traj['metric'])} on held-out rows (mean ± 95% CI over {len(first['seeds'])} seeds)"
    table = Table("labels", *map(escape_data, names), title=title)
    for j in table_positions(first["labeled"]):
        cells = []
        for name in names:
            s = traj["strategies"][name]
            if j < len(s["mean"]):
                cells.append(f"{s['mean'][j]:.3f} ± {(s['ci_high'][j] - s['ci_low'][j]) / 2:.3f}")
            else:
                cells.append("")
        table.add_row(str(first["labeled"][j]), *cells)
    reach = first["reach"]
    table.add_row(f"full pool ({traj['pool_rows']})", *[f"{traj['strategies'][n]['full_mean']:.3f}" for n in names])
    table.add_row(f"labels to {reach['fraction']:.0%} of full",
                  *[_reach_cell(traj["strategies"][n]["reach"]) for n in names])
    console.print(table)


def _reach_cell(reach: dict) -> str:
    mean = reach["labels_mean_curve"]
    seeds = reach["labels_per_seed"]
    hit = [s for s in seeds if s is not None]
    per_seed = "/".join("-" if s is None else str(s) for s in seeds)
    return f"{mean if mean is not None else 'not reached'} (seeds: {per_seed})" if hit or mean else "not reached"


def plot_trajectory(traj: dict[str, Any], path: Path) -> Path:
    """Learning curves: mean and 95% CI band per strategy, full-data score and the reach target."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from thresher.data.writers import atomic_path

    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=110)
    full = None
    for name, s in traj["strategies"].items():
        x = [v for v in s["labeled"] if v is not None]
        line, = ax.plot(x, s["mean"][: len(x)], marker="o", markersize=3, label=name)
        ax.fill_between(x, s["ci_low"][: len(x)], s["ci_high"][: len(x)], color=line.get_color(), alpha=0.15)
        full = s["full_mean"]
        reach = s["reach"]["fraction"]
    if full is not None:
        ax.axhline(full, color="black", linestyle="--", linewidth=1, label=f"full pool ({full:.3f})")
        ax.axhline(reach * full, color="gray", linestyle=":", linewidth=1, label=f"{reach:.0%} of full")
    ax.set_xlabel("labeled rows")
    ax.set_ylabel(f"held-out {traj['metric']}")
    ax.set_title(f"active learning on '{traj['label_field']}' ({traj['classes']} classes)")
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)
    return path


# -- interactive ----------------------------------------------------------------------

def _interactive(pool, state_dir: Path, output: Path, labeled: Optional[str], label_field: Optional[str],
                 strategy: Optional[str], seed: Optional[int], batch: Optional[int], params: dict, cache,
                 overwrite: bool, as_json: bool, quiet: bool) -> None:
    from thresher.active.learners import pool_embeddings
    from thresher.active.loop import ActiveState, next_batch, read_labels
    from thresher.active.strategies import make_strategy
    from thresher.data.manifest import manifest_path
    from thresher.data.writers import check_output_path

    for target in (output, manifest_path(output)):
        check_output_path(target, [pool.source.path] + ([labeled] if labeled else []), overwrite)
    st = ActiveState.load(state_dir)
    if st is None:
        name = strategy or "entropy"
        make_strategy(name, uncertainty=params["uncertainty"], factor=params["factor"])
        if params["cold_start"] == "stratified" and not params["by"]:
            raise UsageError("--cold-start stratified needs --by FIELD")
        st = ActiveState(data={"path": pool.source.path, "sha256": pool.source.sha256, "rows": len(pool)},
                         strategy=name, seed=seed or 0, batch=20 if batch is None else batch, params=params,
                         label_field=label_field)
    else:
        _check_resume(st, pool, state_dir, strategy, seed)
        if batch is not None:
            st.batch = batch
        for key in ("max_labels", "max_rounds"):  # budgets may be set or raised on any call
            if params[key] is not None:
                st.params[key] = params[key]
    if st.batch < 1:
        raise UsageError(f"--batch must be >= 1, got {st.batch}")
    new = 0
    if labeled:
        field = label_field or st.label_field
        if not field:
            raise UsageError("--labeled needs --label-field FIELD (the field holding the labels)")
        labels = read_labels(pool, labeled, field)
        new = sum(1 for k in labels if k not in st.labeled)
        st.labeled.update(labels)
        st.label_field = field
    unanswered = [i for i in st.pending if i not in st.labeled]
    X = pool_embeddings(pool, cache_dir=cache)
    picks, reason = next_batch(pool, X, st)
    if len(picks):
        _write_batch(pool, picks, output, st)
    st.save(state_dir)
    rec = st.history[-1]
    summary = {"round": rec["round"], "labeled": len(st.labeled), "new_labels": new, "unanswered": len(unanswered),
               "batch": int(len(picks)), "output": str(output) if len(picks) else None,
               "kappa_vs_prev": rec["kappa_vs_prev"], "stopped_reason": reason, "state": str(state_dir)}
    if as_json:
        print_json(summary)
    elif not quiet:
        _print_round(summary)


def _check_resume(st, pool, state_dir: Path, strategy: Optional[str], seed: Optional[int]) -> None:
    if st.data.get("sha256") and pool.source.sha256 and st.data["sha256"] != pool.source.sha256:
        raise UsageError(f"{state_dir}: this state belongs to {st.data.get('path')} (another version of the "
                         f"pool); use a new --state directory for {pool.source.path}")
    if strategy is not None and strategy != st.strategy:
        raise UsageError(f"{state_dir}: the session uses strategy {st.strategy!r}; start a new --state "
                         f"directory to change it")
    if seed is not None and seed != st.seed:
        raise UsageError(f"{state_dir}: the session uses seed {st.seed}; drop --seed or start a new --state")


def _write_batch(pool, picks, output: Path, st) -> None:
    """The batch in the input's format (+ an `id` column when the pool has none), with a manifest."""
    import numpy as np

    from thresher.core.selection import Selection
    from thresher.data.manifest import build_manifest, dumps_manifest, manifest_path
    from thresher.data.writers import atomic_path, output_format_for, write_subset

    nan = np.full(len(picks), np.nan)
    rec = st.history[-1]
    sel = Selection(picks, nan, nan.copy(), f"active:{st.strategy}", {"batch": st.batch, **st.params}, st.seed,
                    len(pool), diagnostics={"round": rec["round"], "labeled": rec["labeled"],
                                            "kappa_vs_prev": rec["kappa_vs_prev"],
                                            "stopped_reason": rec["stopped_reason"]})
    fmt = output_format_for(output, pool.source.file_format)
    extra = {} if "id" in pool.fields else {"id": pool.ids_of(picks)}
    write_subset(sel.take(pool), output, out_format=fmt, extra_columns=extra)
    manifest = build_manifest(pool, sel, output, fmt, command="active")
    with atomic_path(manifest_path(output)) as tmp:
        tmp.write_bytes(dumps_manifest(manifest))


def _print_round(s: dict) -> None:
    kappa = "" if s["kappa_vs_prev"] is None else f", kappa vs previous round {s['kappa_vs_prev']:.4f}"
    console.print(f"round {s['round']}: {s['labeled']} labeled ({s['new_labels']} new{kappa})")
    if s["unanswered"]:
        console.print(f"{s['unanswered']} rows of the last batch came back unlabeled; they stay in the pool")
    if s["batch"]:
        console.print(f"next batch: {s['batch']} rows -> {escape_data(s['output'])}  "
                      f"(state: {escape_data(s['state'])})")
    else:
        console.print(f"no rows left to ask for (state: {escape_data(s['state'])})")
    if s["stopped_reason"]:
        console.print(f"[yellow]stopping rule fired[/]: {escape_data(s['stopped_reason'])}")
