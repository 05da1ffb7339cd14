"""`thresher report`: one self-contained HTML report (+ PNG figures) on a run."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from thresher.cli.common import console, escape_data, print_json
from thresher.cli.common import QuietOpt


def register(app: typer.Typer) -> None:
    @app.command("report")
    def report_cmd(
        run: Path = typer.Argument(..., help="A <stem>.manifest.json (or the subset beside it), a results.json / "
                                             "trajectory.json, or a folder holding them."),
        output: Path = typer.Option(..., "-o", "--output", help="The HTML file to write."),
        by: Optional[str] = typer.Option(None, "--by", help="Field whose distribution is compared (default: the "
                                                            "design's strata field, else 'category')."),
        cache: Optional[str] = typer.Option(None, "--cache", help="Feature cache folder (default ~/.cache/thresher)."),
        seed: int = typer.Option(0, "--seed", help="Seeds the embedding-map sample and the representativeness check."),
        max_points: int = typer.Option(3000, "--max-points", help="Rows drawn on the embedding map."),
        no_figures: bool = typer.Option(False, "--no-figures", help="Do not also write PNGs to <stem>_figures/."),
        overwrite: bool = typer.Option(False, "--overwrite"),
        as_json: bool = typer.Option(False, "--json"),
        quiet: bool = QuietOpt,
    ) -> None:
        """Write an HTML report: categories, scores, embedding map, trace, representativeness, evaluation."""
        from thresher.errors import UsageError
        from thresher.report.html import write_report

        if max_points < 10:
            raise UsageError(f"--max-points must be at least 10, got {max_points}")
        result = write_report(run, output, by=by, cache_dir=cache, figures=not no_figures, overwrite=overwrite,
                              seed=seed, max_points=max_points)
        print_summary(result, as_json, quiet)


def print_summary(result, as_json: bool = False, quiet: bool = False) -> None:
    """What `write_report` wrote, for the console (shared with `--report` on sample/select/run)."""
    summary = {"report": str(result.html), "figures_dir": str(result.figures_dir) if result.figures_dir else None,
               "figures": [str(p) for p in result.figures], "sections": result.sections}
    if as_json:
        print_json(summary)
    elif not quiet:
        absent = [name for name, shown in result.sections.items() if not shown]
        figures = f" ({len(result.figures)} PNGs in {escape_data(result.figures_dir)})" if result.figures else ""
        missing = f"; not shown (see the page for why): {escape_data(', '.join(absent))}" if absent else ""
        console.print(f"report -> {escape_data(result.html)}{figures}{missing}")
