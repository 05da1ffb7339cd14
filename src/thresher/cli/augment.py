"""`thresher augment`: EDA augmentation (sr, ri, rs, rd) written with its manifest."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from thresher.cli.common import (FieldMapOpt, FormatOpt, InputFormatOpt, OnErrorOpt, console, escape_data,
                                 print_json, read_input, split_list)
from thresher.cli.common import JsonOpt, OutputFormatOpt, OverwriteOpt, QuietOpt


def register(app: typer.Typer) -> None:
    @app.command("augment")
    def augment_cmd(
        data: str = typer.Argument(..., help="The pool: JSONL, JSON, CSV, Parquet or a HF save_to_disk folder."),
        output: Path = typer.Option(..., "-o", "--output", help="Where to write originals + augmented rows."),
        ops: str = typer.Option("sr,ri,rs,rd", "--ops", help="EDA operations: sr (synonym replacement), ri (random insertion), rs (random swap), rd (random deletion)."),
        alpha: str = typer.Option("0.1", "--alpha", help="Fraction of words each operation changes: 0.1, or per op sr=0.1,rd=0.2."),
        n_aug: int = typer.Option(4, "--n-aug", help="Distinct augmented rows per source row."),
        field: str = typer.Option("prompt", "--field", help="Texts to edit: prompt|response|both."),
        protect: Optional[str] = typer.Option(None, "--protect", help="Words/labels never edited, comma-separated (numbers, code, URLs always are)."),
        by: Optional[str] = typer.Option(None, "--by", help="Category field: its value is protected in each row; with --only-below, picks thin categories."),
        only_below: Optional[int] = typer.Option(None, "--only-below", help="Augment only categories of --by with fewer than N rows."),
        only_new: bool = typer.Option(False, "--only-new", help="Write only the augmented rows."),
        near_dup_threshold: float = typer.Option(0.9, "--near-dup-threshold", help="Jaccard (word 3-shingles) at which an augmented row counts as a near-duplicate of another pool row."),
        drop_near_dups: bool = typer.Option(False, "--drop-near-dups", help="Drop augmented rows that near-duplicate another pool row (exact duplicates are always dropped)."),
        seed: int = typer.Option(0, "--seed", help="Seed; each row's draws depend only on (seed, row id)."),
        record_format: Optional[str] = FormatOpt,
        field_map: Optional[str] = FieldMapOpt,
        input_format: Optional[str] = InputFormatOpt,
        output_format: Optional[str] = OutputFormatOpt,
        on_error: str = OnErrorOpt,
        overwrite: bool = OverwriteOpt,
        as_json: bool = JsonOpt,
        quiet: bool = QuietOpt,
    ) -> None:
        """Augment rows with EDA (synonyms from the bundled WordNet 3.0); augmented rows carry
        _source_id (their group), _synthetic and _aug_ops; pool duplicates are dropped."""
        from thresher.balance.augment import Augmenter, write_augmented

        augmenter = Augmenter(ops=ops, alpha=alpha, n_aug=n_aug, field=field, protect=split_list(protect),
                              by=by, only_below=only_below, near_dup_threshold=near_dup_threshold,
                              drop_near_dups=drop_near_dups, only_new=only_new, seed=seed)
        result = read_input(data, record_format, field_map, input_format, on_error)
        pool = result.dataset
        augmented = augmenter.augment(pool)
        written = write_augmented(pool, augmented, output, params=augmenter.params(), seed=seed,
                                  rejects=result.rejects, out_format=output_format, overwrite=overwrite)
        report = augmented.report
        summary = {"output": str(written["output"]), "manifest": str(written["manifest"]),
                   **{k: v for k, v in report.items() if k != "short"}}
        if as_json:
            print_json(summary)
        elif not quiet:
            _print_summary(summary)


def _print_summary(s: dict) -> None:
    from rich.table import Table

    console.print(f"augmented {s['rows_augmented']} of {s['rows_in']} rows: {s['augmented_rows']} new rows "
                  f"(asked {s['requested']}, acceptance {s['acceptance'] if s['acceptance'] is not None else '-'}) "
                  f"-> {escape_data(s['output'])}  (manifest: {escape_data(s['manifest'])})")
    console.print(f"dropped: {s['dropped_exact_pool_duplicates']} exact duplicates of pool rows, "
                  f"{s['dropped_duplicate_augmented']} repeats among augmented rows, "
                  f"{s['dropped_near_duplicates']} near-duplicates; "
                  f"{s['near_duplicates_of_other_rows']} near-duplicates of other pool rows found")
    if s["short_rows"]:
        console.print(f"{s['short_rows']} rows got fewer than asked:")
        for reason, count in list(s["reasons"].items())[:5]:
            console.print(f"  {count} x {escape_data(reason)}")
    if s.get("categories"):
        table = Table("category", "before", "augmented", "after")
        for c in s["categories"][:40]:
            table.add_row(escape_data(c["category"]), str(c["before"]), str(c["augmented"]), str(c["after"]))
        console.print(table)
