"""`thresher featurize`: compute (or reuse from the cache) features of a pool."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from thresher.cli.common import (ExecutorOpt, FieldMapOpt, FormatOpt, InputFormatOpt, RayAddressOpt, console,
                                 err_console, escape_data, executor_scope, print_json, read_input, split_list)


def register(app: typer.Typer) -> None:
    @app.command("featurize")
    def featurize_cmd(
        data: str = typer.Argument(..., help="The pool."),
        features: Optional[str] = typer.Option(None, "--features", help="Comma-separated feature names (default: text,quality,exact_dup,near_dup,embed_static). Also: tags, cluster, lm, embed_minilm."),
        cache: Optional[str] = typer.Option(None, "--cache", help="Cache folder (default ~/.cache/thresher, or $THRESHER_CACHE)."),
        out: Optional[Path] = typer.Option(None, "--out", help="Export id + features as Parquet."),
        overwrite: bool = typer.Option(False, "--overwrite"),
        clear_cache: bool = typer.Option(False, "--clear-cache", help="Delete this pool's cached features and exit."),
        record_format: Optional[str] = FormatOpt,
        field_map: Optional[str] = FieldMapOpt,
        input_format: Optional[str] = InputFormatOpt,
        executor: str = ExecutorOpt,
        ray_address: Optional[str] = RayAddressOpt,
        as_json: bool = typer.Option(False, "--json"),
        quiet: bool = typer.Option(False, "--quiet", "-q"),
    ) -> None:
        """Compute features (cached on disk: a second run is instant, an interrupted one resumes)."""
        from thresher.features.featurize import export, featurize
        from thresher.features.store import FeatureStore, dataset_fingerprint

        store = FeatureStore(cache)
        if clear_cache:
            ds = read_input(data, record_format, field_map, input_format).dataset
            removed = store.clear(dataset_fingerprint(ds))
            console.print(f"removed {removed} cached feature entries of {escape_data(data)} from "
                          f"{escape_data(store.root)}")
            return
        if out is not None:
            from thresher.data.paths import check_output_path

            check_output_path(out, [data], overwrite, kind="file")
        names = split_list(features) or None
        with executor_scope(executor, ray_address), _progress(quiet or as_json) as progress:
            ds = read_input(data, record_format, field_map, input_format).dataset
            table = featurize(ds, names, store=store, progress=progress)
        stats = store.stats.as_dict()
        if out is not None:
            export(table, out, overwrite=overwrite)
        summary = {"rows": table.num_rows, "columns": table.column_names[1:], "cache": str(store.root),
                   "cache_hits": stats["hits"], "computed": stats["misses"],
                   "parts_resumed": stats["parts_resumed"], "out": str(out) if out else None}
        if as_json:
            print_json(summary)
        elif not quiet:
            console.print(f"{table.num_rows} rows, {len(summary['columns'])} feature columns; "
                          f"{stats['hits']} features from cache, {stats['misses']} computed "
                          f"({stats['parts_resumed']} parts resumed) in {escape_data(store.root)}")
            if out is not None:
                console.print(f"exported -> {escape_data(out)}")


class _progress:
    """A rich progress bar fed by the store's (name, done, total) callback."""

    def __init__(self, disabled: bool):
        self.disabled = disabled

    def __enter__(self):
        if self.disabled:
            return None
        from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

        self.bar = Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
                            TimeRemainingColumn(), console=err_console, transient=True)
        self.bar.__enter__()
        self.tasks: dict[str, int] = {}

        def update(name: str, done: int, total: int) -> None:
            if name not in self.tasks:
                self.tasks[name] = self.bar.add_task(name, total=total)
            self.bar.update(self.tasks[name], completed=done)

        return update

    def __exit__(self, *exc):
        if not self.disabled:
            self.bar.__exit__(*exc)
        return False
