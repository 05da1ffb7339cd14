"""`thresher balance`: over-/under-sample classes or weight them, and write the result with its manifest."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from thresher.cli.common import (FieldMapOpt, FormatOpt, InputFormatOpt, OnErrorOpt, console, escape_data,
                                 print_json, read_input, split_list)
from thresher.cli.common import JsonOpt, OutputFormatOpt, OverwriteOpt, QuietOpt
from thresher.errors import UsageError


def parse_per_class(text: Optional[str]) -> Optional[dict[str, int]]:
    """`{"a": 100, "b": 50}` (JSON) or `a=100,b=50` -> {class: rows}."""
    if not text:
        return None
    if text.lstrip().startswith("{"):
        try:
            raw = json.loads(text)
        except ValueError as err:
            raise UsageError(f"--per-class: not valid JSON ({err}); e.g. '{{\"a\": 100, \"b\": 50}}'") from None
    else:
        raw = {}
        for part in split_list(text):
            name, sep, value = part.rpartition("=")
            if not sep or not name:
                raise UsageError(f"--per-class: expected CLASS=ROWS pairs (e.g. a=100,b=50), got {part!r}")
            raw[name.strip()] = value.strip()
    out = {}
    for name, value in raw.items():
        try:
            n = int(value) if not isinstance(value, (bool, float)) else None
        except ValueError:
            n = None
        if n is None or n < 0 or (isinstance(value, float) and value != int(value)):
            raise UsageError(f"--per-class: class {name!r} needs a whole number of rows >= 0, got {value!r}")
        out[str(name)] = n
    return out


def parse_target(text: Optional[str]) -> int | str | None:
    if text is None or text in ("median", "mean"):
        return text
    if text.isdigit() and int(text) >= 1:
        return int(text)
    raise UsageError(f"--target: expected median, mean or a row count >= 1, got {text!r}")


def register(app: typer.Typer) -> None:
    @app.command("balance")
    def balance_cmd(
        data: str = typer.Argument(..., help="The pool: JSONL, JSON, CSV, Parquet or a HF save_to_disk folder."),
        output: Path = typer.Option(..., "-o", "--output", help="Where to write the balanced data (format from the extension, default the input's)."),
        by: str = typer.Option(..., "--by", help="Field holding each row's class (several, comma-separated, make 'a|b' cells)."),
        strategy: str = typer.Option(..., "--strategy", help="oversample|undersample|hybrid|weights"),
        target_ratio: Optional[float] = typer.Option(None, "--target-ratio", help="Minority/majority ratio to reach, in (0, 1] (default 1: fully balanced)."),
        per_class: Optional[str] = typer.Option(None, "--per-class", help='Exact rows for some classes: \'{"a": 100}\' or a=100,b=50; others are kept.'),
        target: Optional[str] = typer.Option(None, "--target", help="hybrid: common class size: median (default), mean or a row count."),
        power: float = typer.Option(1.0, "--power", help="weights: w_c = (N / (C * N_c)) ** power; 0.5 softens them."),
        diverse: bool = typer.Option(False, "--diverse", help="undersample/hybrid: keep the most spread-out rows (k-center on embeddings), not random ones."),
        seed: Optional[int] = typer.Option(None, "--seed", help="Seed for every random choice (default: 0)."),
        cache: Optional[str] = typer.Option(None, "--cache", help="Feature cache (embeddings for --diverse, features used as --by)."),
        record_format: Optional[str] = FormatOpt,
        field_map: Optional[str] = FieldMapOpt,
        input_format: Optional[str] = InputFormatOpt,
        output_format: Optional[str] = OutputFormatOpt,
        on_error: str = OnErrorOpt,
        overwrite: bool = OverwriteOpt,
        as_json: bool = JsonOpt,
        quiet: bool = QuietOpt,
    ) -> None:
        """Repair class imbalance: random over-sampling, (diverse) under-sampling, hybrid, or a _weight column.

        Over-sampled copies carry _source_id (the copied row's id) and _copy (k-th copy, 0 = original).
        """
        from thresher.balance.resample import Balance, write_balance

        step = Balance(split_list(by), strategy, target_ratio=target_ratio, per_class=parse_per_class(per_class),
                       target=parse_target(target), power=power, diverse=diverse,
                       random_state=0 if seed is None else seed)
        result = read_input(data, record_format, field_map, input_format, on_error)
        pool = result.dataset
        design_pool = _with_class_fields(pool, step.fields, cache)
        features = None
        if diverse:
            from thresher.features.columns import load_features

            features = load_features(design_pool, [step.embedding], cache_dir=cache)
        selection = step.select(design_pool, None, features=features)
        written = write_balance(pool, selection, output, rejects=result.rejects, out_format=output_format,
                                overwrite=overwrite)
        summary = {"output": str(written.output), "manifest": str(written.manifest), "rows": len(selection),
                   "pool_rows": len(pool), "rejected_rows": len(result.rejects),
                   **{k: v for k, v in written.manifest_data["diagnostics"].items()}}
        if as_json:
            print_json(summary)
        elif not quiet:
            _print_summary(summary, written.rejects)


def _with_class_fields(pool, fields: list[str], cache: Optional[str]):
    """Fields that are features (e.g. `instruction_type`, `cluster`) are computed and attached."""
    from thresher.api import attach_features, attach_kmeans

    missing = [f for f in fields if f not in pool.fields]
    if not missing:
        return pool
    ds = attach_features(pool, [f for f in missing if f != "cluster"], cache)
    return attach_kmeans(ds, None, cache) if "cluster" in missing else ds


def _print_summary(summary: dict, rejects_file) -> None:
    from thresher.balance.distribution import render_table

    e = escape_data
    console.print(f"[bold]{e(summary['strategy'])}[/] by {e(summary['by'])}: {summary['pool_rows']} -> "
                  f"{summary['rows']} rows ({summary['copies']} copies, {summary['dropped']} dropped) -> "
                  f"{e(summary['output'])}  (manifest: {e(summary['manifest'])})")
    if summary["rejected_rows"]:
        console.print(f"skipped {summary['rejected_rows']} malformed rows -> {e(rejects_file)}")
    # class labels are data: escaped before rich renders the table cells
    console.print(render_table([{**r, "stratum": e(r["stratum"])} for r in summary["distribution"]]))
    console.print(f"minority/majority: {summary['imbalance_before']:.4g} -> {summary['imbalance_after']:.4g}")
