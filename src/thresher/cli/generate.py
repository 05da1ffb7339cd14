"""`thresher generate`: validated LLM generation for thin categories."""
from __future__ import annotations

import time
from pathlib import Path
from typing import Optional

import typer

from thresher.cli.common import FieldMapOpt, FormatOpt, InputFormatOpt, OnErrorOpt, console, err_console, \
    escape_data, print_json, read_input
from thresher.cli.common import OutputFormatOpt, OverwriteOpt, QuietOpt


def register(app: typer.Typer) -> None:
    @app.command("generate")
    def generate_cmd(
        data: str = typer.Argument(..., help="The pool (alpaca, prompt_completion, messages or sharegpt records)."),
        by: str = typer.Option(..., "--by", help="Category field."),
        for_below: int = typer.Option(..., "--for-below", help="Generate for categories with fewer rows than this."),
        output: Path = typer.Option(..., "-o", "--output"),
        per_category: Optional[int] = typer.Option(None, "--per-category", help="New rows per thin category."),
        to: Optional[int] = typer.Option(None, "--to", help="Fill each thin category up to this many rows "
                                                            "(default: --for-below)."),
        model: Optional[str] = typer.Option(None, "--model", help="Local HF causal LM folder (default: bundled "
                                                                  "SmolLM2-135M-Instruct)."),
        shots: int = typer.Option(3, "--shots", help="Real examples of the category in each prompt."),
        max_new_tokens: int = typer.Option(128, "--max-new-tokens"),
        temperature: float = typer.Option(0.8, "--temperature", help="0 = greedy."),
        top_p: float = typer.Option(0.95, "--top-p"),
        batch_size: int = typer.Option(8, "--batch-size", help="Prompts generated together."),
        max_attempts: Optional[int] = typer.Option(None, "--max-attempts", help="Candidates tried per category "
                                                                                "(default: 4 x needed)."),
        near_threshold: float = typer.Option(0.8, "--near-threshold", help="MinHash Jaccard of a near duplicate."),
        seed: int = typer.Option(0, "--seed"),
        only_new: bool = typer.Option(False, "--only-new", help="Write only the generated rows, not the pool."),
        threads: Optional[int] = typer.Option(None, "--threads", help="Torch CPU threads (default: all cores)."),
        record_format: Optional[str] = FormatOpt,
        field_map: Optional[str] = FieldMapOpt,
        input_format: Optional[str] = InputFormatOpt,
        output_format: Optional[str] = OutputFormatOpt,
        on_error: str = OnErrorOpt,
        overwrite: bool = OverwriteOpt,
        as_json: bool = typer.Option(False, "--json"),
        quiet: bool = QuietOpt,
    ) -> None:
        """Generate new rows for thin categories with a local LM; keep only validated ones (marked _synthetic).

        Each candidate must be non-empty, pass the quality rule, not duplicate the pool or another
        candidate (exact or MinHash near), and sit closer to its own category's embedding centroid than
        to any other. With no thin category nothing is generated (exit 0): the output is the pool as is.
        """
        from thresher.balance.generate import LMGenerator, category_counts, generate_for_thin, plan_targets
        from thresher.balance.synthetic import check_writable, write_generated
        from thresher.balance.validate import CandidateValidator
        from thresher.data.manifest import manifest_path
        from thresher.data.writers import check_output_path
        from thresher.models import torch_threads

        pool = read_input(data, record_format, field_map, input_format, on_error).dataset
        check_writable(pool)
        counts = category_counts(pool, by)
        plan = plan_targets(counts, for_below, per_category, to)
        for target in (output, manifest_path(output)):
            check_output_path(target, [pool.source.path], overwrite)
        start = time.perf_counter()
        if not plan:
            smallest = min(counts, key=counts.get) if counts else None
            _say(quiet or as_json, f"no category of {escape_data(repr(by))} has fewer than {for_below} rows "
                                   f"(smallest: {escape_data(repr(smallest))} with {counts.get(smallest, 0)}); "
                                   "nothing to generate")
        validator = CandidateValidator(pool, by, near_threshold=near_threshold) if plan else None
        with torch_threads(threads), _Progress(quiet or as_json or not plan, sum(plan.values())) as progress:
            generator = LMGenerator.load(model, max_new_tokens=max_new_tokens, temperature=temperature,
                                         top_p=top_p, batch_size=batch_size) if plan else _NoModel()
            result = generate_for_thin(pool, by, generator, below=for_below, per_category=per_category, to=to,
                                       shots=shots, max_attempts=max_attempts, validator=validator, seed=seed,
                                       progress=progress)
        manifest = write_generated(pool, result, output, only_new=only_new, out_format=output_format,
                                   overwrite=overwrite, seed=seed)
        seconds = time.perf_counter() - start
        if as_json:
            print_json({"output": str(output), "manifest": str(manifest_path(output)), "seconds": round(seconds, 1),
                        **{k: manifest[k] for k in ("generator", "categories", "attempts", "accepted", "kept",
                                                     "acceptance_rate", "rejected", "not_reached")}})
        elif not quiet:
            print_report(result.summary(), seconds)
            console.print(f"{manifest['output']['rows']} rows ({len(result.rows)} synthetic) -> "
                          f"{escape_data(output)} (manifest: {escape_data(manifest_path(output))})")


def print_report(summary: dict, seconds: float) -> None:
    """Acceptance per category and rejections per reason, as rich tables."""
    from rich.table import Table

    if not summary["categories"]:
        return
    e = escape_data
    table = Table("category", "pool", "target", "tried", "valid", "kept", "rate", "reached",
                  title=f"generated with {e(summary['generator'])} in {seconds:.0f} s")
    for c in summary["categories"]:
        rate = "-" if c["acceptance_rate"] is None else f"{c['acceptance_rate']:.0%}"
        table.add_row(e(c["category"]), str(c["pool_rows"]), str(c["target"]), str(c["attempts"]), str(c["accepted"]),
                      str(c["kept"]), rate, "yes" if c["reached"] else "[red]no[/]")
    console.print(table)
    reasons = Table("rejection reason", "total", "by category")
    for reason, n in summary["rejected"].items():
        per = ", ".join(f"{e(c['category'])}: {c['rejected'][reason]}" for c in summary["categories"]
                        if c["rejected"][reason])
        reasons.add_row(e(reason), str(n), per or "-")
    console.print(reasons)
    if summary["not_reached"]:
        console.print(f"[yellow]target not reached for: {', '.join(map(e, summary['not_reached']))} "
                      f"(raise --max-attempts or use a larger --model)[/]")


def _say(quiet: bool, text: str) -> None:
    if not quiet:
        console.print(text)


class _NoModel:
    """Stands in for the LM when nothing is to be generated (so no model is loaded)."""

    name = "none"

    def __call__(self, prompts, seed, stop):  # pragma: no cover - never called without a plan
        raise AssertionError("no generation was planned")


class _Progress:
    """A rich progress bar over candidates kept, fed by `generate_for_thin`'s callback."""

    def __init__(self, disabled: bool, total: int):
        self.disabled, self.total = disabled, total

    def __enter__(self):
        if self.disabled:
            return None
        from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

        self.bar = Progress(TextColumn("{task.description}"), BarColumn(),
                            TextColumn("{task.completed}/{task.total} kept"), TimeElapsedColumn(),
                            console=err_console, transient=True)
        self.bar.__enter__()
        self.task = self.bar.add_task("generating", total=self.total)
        self.kept: dict[str, int] = {}

        def update(report) -> None:
            self.kept[report.category] = report.kept
            self.bar.update(self.task, completed=sum(self.kept.values()),
                            description=f"{escape_data(report.category)} ({report.attempts} tried)")

        return update

    def __exit__(self, *exc):
        if not self.disabled:
            self.bar.__exit__(*exc)
        return False
