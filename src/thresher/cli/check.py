"""`thresher check`: is a subset representative of its pool?"""
from __future__ import annotations

from typing import Optional

import typer

from thresher.cli.common import FieldMapOpt, FormatOpt, console, print_json, read_input, split_list


def register(app: typer.Typer) -> None:
    @app.command("check")
    def check_cmd(
        subset: str = typer.Argument(..., help="The subset file."),
        against: str = typer.Option(..., "--against", help="The pool it was drawn from."),
        by: Optional[str] = typer.Option(None, "--by", help="Categorical field(s); several make joint cells."),
        fields: Optional[str] = typer.Option(None, "--fields", help="Fields to compare (default: every comparable scalar field)."),
        weighted: bool = typer.Option(False, "--weighted", help="Weight subset rows by their _weight column (for PPS samples)."),
        record_format: Optional[str] = FormatOpt,
        field_map: Optional[str] = FieldMapOpt,
        as_json: bool = typer.Option(False, "--json"),
    ) -> None:
        """Compare a subset with its pool: chi-square per category field, KS / PSI / SMD per numeric field."""
        from thresher.sampling.check import check_representativeness

        sub = read_input(subset, record_format, field_map, None).dataset
        pool = read_input(against, record_format, field_map, None).dataset
        weights = sub.numeric("_weight") if weighted else None
        report = check_representativeness(sub, pool, by=split_list(by) or None,
                                          fields=split_list(fields) or None, weights=weights)
        if as_json:
            print_json(report.to_json())
        else:
            console.print(report.render_rich())
