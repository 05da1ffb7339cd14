"""`thresher size`: how many rows a sample needs for a given margin of error."""
from __future__ import annotations

import json
from typing import Optional

import typer

from thresher.cli.terminal import escape_data

from thresher.cli.common import console, print_json
from thresher.errors import UsageError


def register(app: typer.Typer) -> None:
    @app.command("size")
    def size_cmd(
        population: Optional[int] = typer.Option(None, "--population", help="Pool size N (omit for an infinite population)."),
        margin: float = typer.Option(..., "--margin", help="Margin of error (absolute: 0.05 = ±5 points for a proportion; units of the field for a mean)."),
        confidence: float = typer.Option(0.95, "--confidence"),
        proportion: Optional[float] = typer.Option(None, "--proportion", help="Expected proportion (default 0.5, the worst case)."),
        sd: Optional[float] = typer.Option(None, "--sd", help="Standard deviation, for a mean."),
        deff: float = typer.Option(1.0, "--deff", help="Design effect (e.g. from a cluster design)."),
        strata: Optional[str] = typer.Option(None, "--strata", help='Per-stratum sizes as JSON, e.g. \'{"a": 1200, "b": 300}\': a size per stratum.'),
        as_json: bool = typer.Option(False, "--json"),
    ) -> None:
        """Sample size for a proportion or a mean, with finite-population correction and design effect."""
        from thresher.sampling.size import sample_size, sample_size_per_stratum

        if proportion is not None and sd is not None:
            raise UsageError("give --proportion (for a proportion) or --sd (for a mean), not both")
        kwargs = {"margin": margin, "confidence": confidence, "deff": deff}
        kwargs.update({"sd": sd} if sd is not None else {"proportion": 0.5 if proportion is None else proportion})
        if strata:
            try:
                sizes = json.loads(strata)
            except ValueError as err:
                raise UsageError(f"--strata must be a JSON object of stratum sizes ({err})") from None
            if not isinstance(sizes, dict):
                raise UsageError(f"--strata must be a JSON object {{stratum: pool size}}, got {strata!r}")
            result = sample_size_per_stratum(sizes, **kwargs)
        else:
            result = sample_size(population=population, **kwargs)
        data = result.to_json()
        if as_json:
            print_json(data)
            return
        _print(data)


def _print(data: dict) -> None:
    if "strata" in data:
        from rich.table import Table

        table = Table("stratum", "population", "n")
        for label, row in data["strata"].items():
            table.add_row(escape_data(label), str(row["population"]), str(row["n"]))
        console.print(table)
        console.print(f"total n = {data['total']}")
        return
    console.print(f"n = {data['n']}")
    console.print(", ".join(f"{k}={v}" for k, v in data.items() if k != "n" and v is not None))
