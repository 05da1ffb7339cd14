"""`thresher select` and `thresher run`: selectors and recipes."""
from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer
import yaml

from thresher.cli.common import (FieldMapOpt, FormatOpt, InputFormatOpt, OnErrorOpt, console, print_json,
                                 read_input, split_list)
from thresher.cli.common import (ExecutorOpt, OutputFormatOpt, OverwriteOpt, QuietOpt, RayAddressOpt,
                                 executor_scope)
from thresher.errors import UsageError


def method_params(where, kind, keep, score, threshold, max_ifd, top_fraction, target, by, proportions, temperature,
                  caps, embedding, extra: list[str]) -> dict:
    """Options given on the command line, as step parameters (only those set)."""
    given = {"where": where, "kind": kind, "keep": keep, "score": score, "threshold": threshold,
             "max_ifd": max_ifd, "top_fraction": top_fraction, "target": target, "by": by,
             "temperature": temperature, "embedding": embedding}
    params = {k: v for k, v in given.items() if v is not None}
    if proportions is not None:
        params["proportions"] = _yaml_value(proportions, "--proportions")
    if caps is not None:
        params["caps"] = _yaml_value(caps, "--caps")
    for item in extra:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise UsageError(f"--param: expected KEY=VALUE, got {item!r}")
        params[key.strip().replace("-", "_")] = _yaml_value(value, f"--param {key}")
    return params


def _coverage_option(min_per_category: int | None, coverage_by: str | None):
    from thresher.pipeline.coverage import CoverageSpec

    value: dict = {} if min_per_category is None else {"min": min_per_category}
    if coverage_by is not None:
        value["by"] = coverage_by
    return CoverageSpec.parse(value or None)


def _yaml_value(text: str, option: str):
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise UsageError(f"{option}: cannot parse {text!r} ({err})") from None


def print_trace(trace: list[dict]) -> None:
    from rich.table import Table

    table = Table("step", "rows in", "rows out", "removed (reason: rows)")
    for entry in trace:
        reasons = "; ".join(f"{r}: {c}" for r, c in entry["removed"].items()) or "-"
        table.add_row(entry["step"], str(entry["rows_in"]), str(entry["rows_out"]), reasons)
    console.print(table)


def print_coverage(coverage: dict | None, limit: int = 8) -> None:
    """The thinnest categories (pool -> available -> kept) and any coverage warnings."""
    if not coverage:
        return
    from rich.table import Table

    from thresher.cli.terminal import escape_data

    rows = sorted(coverage["per_category"], key=lambda r: (r["ok"], r["kept"] - r["floor"], r["kept"]))
    table = Table(f"{escape_data(coverage['by'])} (thinnest {min(limit, len(rows))} of {coverage['categories']})", "pool",
                  "available", "kept", f"floor min({coverage['min']}, available)", title="coverage")
    for r in rows[:limit]:
        mark = "" if r["ok"] else " [red]below[/]"
        table.add_row(escape_data(r["category"]), str(r["pool"]), str(r["available"]), f"{r['kept']}{mark}", str(r["floor"]))
    console.print(table)
    for warning in coverage["warnings"]:
        console.print(f"[yellow]warning:[/] coverage: {escape_data(warning)}")


def register(app: typer.Typer) -> None:
    @app.command("select")
    def select_cmd(
        data: str = typer.Argument(..., help="The pool."),
        method: str = typer.Option(..., "--method", "-m", help="quality|dedup|ifd|superfilter|deita|kcenter|facility|target|mixture|rds|length"),
        output: Path = typer.Option(..., "-o", "--output"),
        n: Optional[int] = typer.Option(None, "--n"),
        fraction: Optional[float] = typer.Option(None, "--fraction"),
        tokens: Optional[int] = typer.Option(None, "--tokens", help="Token budget (rows are added while they fit)."),
        seed: int = typer.Option(0, "--seed"),
        where: Optional[str] = typer.Option(None, "--where", help="quality: rule, e.g. 'response_words >= 3 and ifd < 1'."),
        kind: Optional[str] = typer.Option(None, "--kind", help="dedup: exact|near|semantic"),
        keep: Optional[str] = typer.Option(None, "--keep", help="dedup: first|longest|highest"),
        score: Optional[str] = typer.Option(None, "--score", help="deita / dedup keep=highest: score column(s), e.g. 'ifd' or 'a*b'."),
        threshold: Optional[float] = typer.Option(None, "--threshold", help="deita / semantic dedup: cosine threshold."),
        max_ifd: Optional[float] = typer.Option(None, "--max-ifd"),
        top_fraction: Optional[float] = typer.Option(None, "--top-fraction", help="superfilter: IFD pre-selection share."),
        target: Optional[str] = typer.Option(None, "--target", help="target: file of target examples."),
        by: Optional[str] = typer.Option(None, "--by", help="mixture: task field."),
        proportions: Optional[str] = typer.Option(None, "--proportions", help="mixture: proportional|equal|temperature or YAML {task: share}."),
        temperature: Optional[float] = typer.Option(None, "--temperature"),
        caps: Optional[str] = typer.Option(None, "--caps", help="mixture: a cap per task (int or YAML {task: n})."),
        embedding: Optional[str] = typer.Option(None, "--embedding", help="embedding feature column (default 'embedding')."),
        against: Optional[str] = typer.Option(None, "--against", help="dedup: remove pool rows that overlap this eval file (exact + near)."),
        fields: Optional[str] = typer.Option(None, "--fields", help="dedup/quality/rds: text fields, e.g. 'instruction' or 'prompt,response'."),
        min_per_category: Optional[int] = typer.Option(None, "--min-per-category", help="Enforce at least min(K, available) rows per category (default: warn under 5)."),
        coverage_by: Optional[str] = typer.Option(None, "--coverage-by", help="Category field for the coverage report (default: task/category/label..., else clusters; 'none': off)."),
        param: List[str] = typer.Option([], "--param", help="Any other step parameter, KEY=VALUE (YAML value)."),
        cache: Optional[str] = typer.Option(None, "--cache", help="Feature cache folder (default ~/.cache/thresher)."),
        keep_removed: bool = typer.Option(False, "--keep-removed", help="Also write removed rows with their reasons."),
        record_format: Optional[str] = FormatOpt,
        field_map: Optional[str] = FieldMapOpt,
        input_format: Optional[str] = InputFormatOpt,
        output_format: Optional[str] = OutputFormatOpt,
        on_error: str = OnErrorOpt,
        overwrite: bool = OverwriteOpt,
        report: Optional[Path] = typer.Option(None, "--report", help="Also write an HTML report on the subset here."),
        executor: str = ExecutorOpt,
        ray_address: Optional[str] = RayAddressOpt,
        as_json: bool = typer.Option(False, "--json"),
        quiet: bool = QuietOpt,
    ) -> None:
        """Select rows with an LLM-data selector and write them with a manifest and trace."""
        from thresher.api import write_selection
        from thresher.data.writers import check_output_path
        from thresher.features.store import FeatureStore
        from thresher.pipeline.runner import StepSpec, run_steps, write_removed

        params = method_params(where, kind, keep, score, threshold, max_ifd, top_fraction, target,
                               split_list(by)[0] if by else None, proportions, temperature, caps, embedding, param)
        if against is not None:
            params["against"] = against
        if fields is not None:
            params["fields"] = split_list(fields)
        coverage = _coverage_option(min_per_category, coverage_by)
        params.update({k: v for k, v in (("n", n), ("fraction", fraction), ("tokens", tokens)) if v is not None})
        removed_path = output.with_name(f"{output.stem}.removed.jsonl")
        with executor_scope(executor, ray_address) as executor_field:
            result = read_input(data, record_format, field_map, input_format, on_error)
            pool = result.dataset
            if keep_removed:
                check_output_path(removed_path, [pool.source.path], overwrite)
            if report:
                check_output_path(report, [pool.source.path], overwrite)
            run = run_steps(pool, [StepSpec(method, params)], seed=seed, store=FeatureStore(cache),
                            coverage=coverage)
        written = write_selection(pool, run.selection, output, command="select", rejects=result.rejects,
                                  out_format=output_format, overwrite=overwrite,
                                  extra={"trace": run.trace, "coverage": run.coverage, **executor_field})
        if keep_removed:
            write_removed(pool, run.removed, removed_path)
        summary = {"output": str(written.output), "manifest": str(written.manifest), "rows": len(run.selection),
                   "pool_rows": len(pool), "method": method, "trace": run.trace, "coverage": run.coverage}
        if report:
            from thresher.report.html import write_report

            summary["report"] = str(write_report(written.manifest, report, pool=pool, selected=run.selection.indices,
                                                 by=split_list(by)[0] if by else None, cache_dir=cache,
                                                 overwrite=overwrite, seed=seed).html)
        if as_json:
            print_json(summary)
        elif not quiet:
            console.print(f"[bold]{method}[/]: {len(run.selection)} of {len(pool)} rows -> {written.output} "
                          f"(manifest: {written.manifest})")
            print_trace(run.trace)
            print_coverage(run.coverage)

    @app.command("run")
    def run_cmd(
        recipe: Path = typer.Argument(..., help="A YAML recipe: data, seed, steps, output."),
        overwrite: bool = OverwriteOpt,
        keep_removed: bool = typer.Option(False, "--keep-removed"),
        cache: Optional[str] = typer.Option(None, "--cache"),
        report: Optional[Path] = typer.Option(None, "--report", help="Also write an HTML report here (default: the "
                                                                     "recipe's `report:` path, if any)."),
        executor: Optional[str] = typer.Option(None, "--executor", help="local|ray (default: the recipe's "
                                                                        "`executor:`, else local)."),
        ray_address: Optional[str] = RayAddressOpt,
        as_json: bool = typer.Option(False, "--json"),
        quiet: bool = QuietOpt,
    ) -> None:
        """Run a recipe: featurize as needed, apply the steps in order, write subset + manifest + trace."""
        from thresher.api import run_recipe

        if report:
            from thresher.data.writers import check_output_path

            check_output_path(report, [], overwrite)
        result = run_recipe(recipe, overwrite=overwrite, keep_removed=keep_removed, cache_dir=cache,
                            executor=executor, ray_address=ray_address)
        summary = {k: result[k] for k in ("output", "manifest", "rows", "pool_rows", "trace", "removed_file",
                                          "coverage")}
        report = report or (Path(result["recipe"].report) if result["recipe"].report else None)
        if report:
            from thresher.report.html import write_report

            summary["report"] = str(write_report(result["manifest"], report, pool=result["pool"],
                                                 selected=result["selection"].indices, cache_dir=cache,
                                                 overwrite=overwrite or result["recipe"].output.overwrite,
                                                 seed=result["recipe"].seed).html)
        if as_json:
            print_json(summary)
        elif not quiet:
            console.print(f"recipe {recipe}: {result['rows']} of {result['pool_rows']} rows -> {result['output']} "
                          f"(manifest: {result['manifest']})")
            print_trace(result["trace"])
            print_coverage(result["coverage"])
