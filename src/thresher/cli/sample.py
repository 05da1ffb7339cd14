"""`thresher sample`: draw a probability sample and write it with its manifest."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from thresher.cli.terminal import escape_data

from thresher.cli.common import (FieldMapOpt, FormatOpt, InputFormatOpt, OnErrorOpt, console, print_json,
                                 read_input, split_list)
from thresher.cli.common import (ExecutorOpt, JsonOpt, OutputFormatOpt, OverwriteOpt, QuietOpt, RayAddressOpt,
                                 executor_scope)
from thresher.core.budget import Budget
from thresher.errors import UsageError


def design_params(design: str, *, replace: bool, by: list[str], allocation: str, variance_of: Optional[str],
                  cost_of: Optional[str], costs: Optional[str], min_per_stratum: int, max_per_stratum: Optional[int], thin: str, cluster_by: Optional[str],
                  stages: int, rows_per_cluster: Optional[int], icc_of: Optional[str], sort_by: Optional[str],
                  variable_intervals: bool, check_field: Optional[str], size_by: Optional[str],
                  temperature: float, floor: float, cap: Optional[float], poisson: bool) -> dict:
    """Map CLI options to the design's constructor parameters (only those it takes)."""
    if design == "random":
        return {"replace": replace}
    if design == "stratified":
        if not by:
            raise UsageError("--design stratified needs --by FIELD[,FIELD...]")
        return {"by": by, "allocation": allocation, "variance_of": variance_of, "cost_of": cost_of,
                "cost": _parse_costs(costs), "min_per_stratum": min_per_stratum, "max_per_stratum": max_per_stratum, "thin": thin}
    if design == "cluster":
        if not cluster_by:
            raise UsageError("--design cluster needs --cluster-by FIELD")
        return {"cluster_by": cluster_by, "stages": stages, "rows_per_cluster": rows_per_cluster, "icc_of": icc_of}
    if design == "systematic":
        return {"sort_by": sort_by, "variable_intervals": variable_intervals, "check_field": check_field}
    if design == "pps":
        if not size_by:
            raise UsageError("--design pps needs --size-by FIELD")
        return {"size_by": size_by, "temperature": temperature, "floor": floor, "cap": cap, "poisson": poisson}
    raise UsageError(f"unknown design {design!r}; choose random, stratified, cluster, systematic or pps")


def register(app: typer.Typer) -> None:
    @app.command("sample")
    def sample_cmd(
        data: str = typer.Argument(..., help="The pool: JSONL, JSON, CSV, Parquet or a HF save_to_disk folder."),
        output: Path = typer.Option(..., "-o", "--output", help="Where to write the subset (format from the extension, default the input's)."),
        design: str = typer.Option("random", "--design", help="random|stratified|cluster|systematic|pps"),
        n: Optional[int] = typer.Option(None, "--n", help="Rows to draw."),
        fraction: Optional[float] = typer.Option(None, "--fraction", help="Fraction of the pool to draw."),
        seed: Optional[int] = typer.Option(None, "--seed", help="Seed for every random choice (default: 0)."),
        replace: bool = typer.Option(False, "--replace", help="random: draw with replacement."),
        by: Optional[str] = typer.Option(None, "--by", help="stratified: field(s) defining strata, comma-separated."),
        allocation: str = typer.Option("proportional", "--allocation", help="stratified: proportional|equal|neyman|optimal (optimal: also --cost or --costs)."),
        variance_of: Optional[str] = typer.Option(None, "--variance-of", help="stratified neyman/optimal: numeric field whose per-stratum sd drives allocation."),
        cost_of: Optional[str] = typer.Option(None, "--cost", help="stratified optimal: numeric field, the cost of each row; c_h = its stratum mean."),
        costs: Optional[str] = typer.Option(None, "--costs", help='stratified optimal: cost per row of each stratum as JSON, e.g. \'{"qa": 1, "code": 4}\'.'),
        min_per_stratum: int = typer.Option(0, "--min-per-stratum"),
        max_per_stratum: Optional[int] = typer.Option(None, "--max-per-stratum"),
        thin: str = typer.Option("take-all", "--thin", help="stratified: thin cells take-all|collapse|error"),
        cluster_by: Optional[str] = typer.Option(None, "--cluster-by", help="cluster: field naming each row's cluster."),
        clusters: Optional[str] = typer.Option(None, "--clusters", help="cluster: k-means clusters of the embeddings as clusters, e.g. kmeans:50."),
        stages: int = typer.Option(1, "--stages", help="cluster: 1 (whole clusters) or 2 (rows within clusters)."),
        rows_per_cluster: Optional[int] = typer.Option(None, "--rows-per-cluster", help="cluster, 2 stages: rows drawn per cluster."),
        icc_of: Optional[str] = typer.Option(None, "--icc-of", help="cluster: numeric field for intra-cluster correlation / design effect."),
        sort_by: Optional[str] = typer.Option(None, "--sort-by", help="systematic: order rows by this field first."),
        variable_intervals: bool = typer.Option(False, "--variable-intervals", help="systematic: random start per block."),
        check_field: Optional[str] = typer.Option(None, "--check-field", help="systematic: field checked for periodicity."),
        size_by: Optional[str] = typer.Option(None, "--size-by", help="pps: numeric size/score field."),
        temperature: float = typer.Option(1.0, "--temperature"),
        floor: float = typer.Option(0.0, "--floor"),
        cap: Optional[float] = typer.Option(None, "--cap"),
        poisson: bool = typer.Option(False, "--poisson", help="pps: Poisson sampling (random size) instead of fixed size."),
        estimate: Optional[str] = typer.Option(None, "--estimate", help="Also estimate the pool mean/total of this numeric field from the sample."),
        cache: Optional[str] = typer.Option(None, "--cache", help="Feature cache (fields that are features, e.g. --by cluster, are computed)."),
        record_format: Optional[str] = FormatOpt,
        field_map: Optional[str] = FieldMapOpt,
        input_format: Optional[str] = InputFormatOpt,
        output_format: Optional[str] = OutputFormatOpt,
        on_error: str = OnErrorOpt,
        overwrite: bool = OverwriteOpt,
        report: Optional[Path] = typer.Option(None, "--report", help="Also write an HTML report on the sample here."),
        executor: str = ExecutorOpt,
        ray_address: Optional[str] = RayAddressOpt,
        as_json: bool = JsonOpt,
        quiet: bool = QuietOpt,
    ) -> None:
        """Draw a probability sample (random, stratified, cluster, systematic, PPS) and write it with a manifest."""
        from thresher.api import attach_features, attach_kmeans, make_design, write_selection

        budget = Budget.parse(n=n, fraction=fraction)
        kmeans_k = _parse_clusters(clusters) if clusters else None
        if kmeans_k is not None:
            cluster_by = cluster_by or "cluster"
        seed = 0 if seed is None else seed
        params = design_params(design, replace=replace, by=split_list(by), allocation=allocation,
                               variance_of=variance_of, cost_of=cost_of, costs=costs, min_per_stratum=min_per_stratum,
                               max_per_stratum=max_per_stratum, thin=thin, cluster_by=cluster_by, stages=stages,
                               rows_per_cluster=rows_per_cluster, icc_of=icc_of, sort_by=sort_by,
                               variable_intervals=variable_intervals, check_field=check_field, size_by=size_by,
                               temperature=temperature, floor=floor, cap=cap, poisson=poisson)
        sampler = make_design(design, random_state=seed, **params)
        if report:
            from thresher.data.writers import check_output_path

            check_output_path(report, [data], overwrite)
        fields = split_list(by) + [variance_of, cost_of, cluster_by, icc_of, sort_by, check_field, size_by, estimate]
        with executor_scope(executor, ray_address) as extra:  # rows and features on workers; the design runs here
            result = read_input(data, record_format, field_map, input_format, on_error)
            pool = result.dataset
            design_pool = attach_features(pool, [f for f in fields if f and f != "cluster"], cache)
            if kmeans_k is not None or "cluster" in fields:
                design_pool = attach_kmeans(design_pool, kmeans_k, cache)
        selection = sampler.select(design_pool, budget)
        if estimate:
            from thresher.sampling.estimate import estimate as estimate_fn

            extra["estimate"] = {"field": estimate, **estimate_fn(design_pool, selection, estimate).to_json()}
        written = write_selection(pool, selection, output, command="sample", budget=budget,
                                  rejects=result.rejects, out_format=output_format, overwrite=overwrite,
                                  extra=extra)
        summary = {"output": str(written.output), "manifest": str(written.manifest), "rows": len(selection),
                   "pool_rows": len(pool), "rejected_rows": len(result.rejects), "design": design,
                   "strata": selection.strata, "diagnostics": written.manifest_data["diagnostics"], **extra}
        if report:
            from thresher.report.html import write_report

            summary["report"] = str(write_report(written.manifest, report, pool=pool, selected=selection.indices,
                                                 by=(split_list(by) or [None])[0], cache_dir=cache,
                                                 overwrite=overwrite, seed=seed).html)
        if as_json:
            print_json(summary)
        elif not quiet:
            _print_summary(summary, written.rejects)


def _parse_costs(text: Optional[str]) -> Optional[dict]:
    if text is None:
        return None
    try:
        costs = json.loads(text)
    except ValueError as err:
        raise UsageError(f"--costs must be a JSON object {{stratum: cost per row}} ({err})") from None
    if not isinstance(costs, dict):
        raise UsageError(f"--costs must be a JSON object {{stratum: cost per row}}, got {text!r}")
    return costs


def _parse_clusters(text: str) -> int:
    kind, _, k = text.partition(":")
    if kind != "kmeans" or not k.isdigit() or int(k) < 1:
        raise UsageError(f"--clusters: expected kmeans:K (e.g. kmeans:50), got {text!r}")
    return int(k)


def _print_summary(summary: dict, rejects_file) -> None:
    from rich.table import Table

    console.print(f"[bold]{escape_data(summary['design'])}[/] sample: {summary['rows']} of {summary['pool_rows']} rows "
                  f"-> {escape_data(summary['output'])}  (manifest: {escape_data(summary['manifest'])})")
    if summary["rejected_rows"]:
        console.print(f"skipped {summary['rejected_rows']} malformed rows -> {escape_data(rejects_file)}")
    strata = summary.get("strata")
    if strata:
        table = Table("stratum", "pool", "selected", "pi")
        for s in strata[:40]:
            pi = s.get("pi")
            table.add_row(escape_data(s.get("stratum", s.get("cluster", ""))), str(s.get("pool", "")),
                          str(s.get("selected", "")), f"{pi:.4g}" if isinstance(pi, (int, float)) else "")
        console.print(table)
        if len(strata) > 40:
            console.print(f"... {len(strata) - 40} more strata in the manifest")
    for key, value in (summary.get("diagnostics") or {}).items():
        if isinstance(value, dict) and "warning" in value:
            console.print(f"[yellow]warning[/]: {escape_data(value['warning'])}")
    if "estimate" in summary:
        e = summary["estimate"]
        console.print(f"estimate of {escape_data(e['field'])}: " + ", ".join(
            f"{k}={v:.6g}" for k, v in e.items() if isinstance(v, float)))
        for note in e.get("notes") or []:
            console.print(f"[yellow]note[/]: {escape_data(note)}")
