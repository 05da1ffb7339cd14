"""Options and helpers shared by commands."""
from __future__ import annotations

import json
from contextlib import contextmanager
from typing import Iterator, Optional

import typer
from rich.console import Console

from thresher.cli.terminal import escape_data, printable, printable_json  # noqa: F401  (the escaping chokepoint)
from thresher.data.formats import parse_field_map
from thresher.data.readers import ReadResult

# emoji=False: a label like ":warning:" must print as written, not as an emoji.
# Strings from the data still go through `escape_data` (markup, controls).
console = Console(stderr=False, highlight=False, soft_wrap=True, emoji=False)
err_console = Console(stderr=True, highlight=False, emoji=False)

FormatOpt = typer.Option(None, "--format", help="Record format: alpaca|sharegpt|messages|prompt_completion|text (default: detect).")
FieldMapOpt = typer.Option(None, "--field-map", help="Rename fields a format reads, e.g. instruction=question,output=answer.")
InputFormatOpt = typer.Option(None, "--input-format", help="File format: jsonl|json|csv|parquet|hf (default: from the path).")
OutputFormatOpt = typer.Option(None, "--output-format", help="jsonl|json|csv|parquet|hf")
OverwriteOpt = typer.Option(False, "--overwrite", help="Replace an existing output.")
JsonOpt = typer.Option(False, "--json", help="Print the summary as JSON.")
QuietOpt = typer.Option(False, "--quiet", "-q")
OnErrorOpt = typer.Option("raise", "--on-error", help="raise: stop at the first bad row; skip: skip bad rows and write them to <output>.rejects.jsonl.")
ExecutorOpt = typer.Option("local", "--executor", help="Where features are computed: local (this process) or ray (Ray Data workers: the cluster at --ray-address / $RAY_ADDRESS, else a local Ray). Same results, same ids.")
RayAddressOpt = typer.Option(None, "--ray-address", help="Ray cluster to join with --executor ray (default: $RAY_ADDRESS; none: start a local Ray).")


def split_list(text: Optional[str]) -> list[str]:
    return [p.strip() for p in text.split(",") if p.strip()] if text else []


def read_input(path: str, record_format: Optional[str], field_map: Optional[str],
               input_format: Optional[str], on_error: str = "raise") -> ReadResult:
    """The pool; inside `executor_scope` with ray, read shard by shard on the workers."""
    from thresher.pipeline.executors import read_pool

    return read_pool(path, file_format=input_format, record_format=record_format,
                     field_map=parse_field_map(field_map), on_error=on_error)


def print_json(data) -> None:
    """`data` as JSON on stdout; characters a terminal would act on are \\u-escaped."""
    typer.echo(printable_json(json.dumps(data, indent=2, ensure_ascii=False)))


@contextmanager
def executor_scope(executor: Optional[str], ray_address: Optional[str] = None) -> Iterator[dict]:
    """Run the enclosed command's featurizing on `executor`; yields the manifest
    fields it adds (`{"executor": {...}}` for ray, nothing for local)."""
    from thresher.pipeline.executors import make_executor, manifest_fields, use_executor

    chosen = make_executor(executor or "local", address=ray_address)
    with use_executor(chosen):
        yield manifest_fields(chosen)
