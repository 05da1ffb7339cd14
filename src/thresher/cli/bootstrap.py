"""`thresher bootstrap`: a percentile confidence interval for a statistic of a field."""
from __future__ import annotations

from typing import Optional

import numpy as np
import typer

from thresher.cli.common import FieldMapOpt, FormatOpt, InputFormatOpt, console, print_json, read_input
from thresher.errors import UsageError


def register(app: typer.Typer) -> None:
    @app.command("bootstrap")
    def bootstrap_cmd(
        data: str = typer.Argument(..., help="A pool or subset file."),
        field: str = typer.Option(..., "--field", help="Numeric field (or prompt/response: their length in characters)."),
        statistic: str = typer.Option("mean", "--statistic", help="mean|median|std|sum"),
        resamples: int = typer.Option(1000, "--resamples", "-B"),
        confidence: float = typer.Option(0.95, "--confidence"),
        seed: int = typer.Option(0, "--seed"),
        record_format: Optional[str] = FormatOpt,
        field_map: Optional[str] = FieldMapOpt,
        input_format: Optional[str] = InputFormatOpt,
        as_json: bool = typer.Option(False, "--json"),
    ) -> None:
        """Bootstrap (B resamples with replacement) percentile CI of a statistic of one field."""
        from thresher.sampling.bootstrap import bootstrap_ci

        ds = read_input(data, record_format, field_map, input_format).dataset
        values = _values(ds, field)
        result = bootstrap_ci(values, statistic, n_resamples=resamples, confidence=confidence, random_state=seed)
        data_out = {"field": field, "rows": int(len(values)), **result.to_json()}
        if as_json:
            print_json(data_out)
            return
        console.print(f"{statistic}({field}) = {result.estimate:.6g}  "
                      f"{confidence:.0%} CI [{result.low:.6g}, {result.high:.6g}]  "
                      f"(bootstrap se {result.std_error:.3g}, B={resamples}, n={len(values)})")


def _values(ds, field: str) -> np.ndarray:
    if field in ("prompt", "response") and field not in ds.fields:
        import pyarrow.compute as pc

        return pc.utf8_length(ds.column(field)).to_numpy(zero_copy_only=False).astype(float)
    values = ds.numeric(field)
    values = values[np.isfinite(values)]
    if len(values) == 0:
        raise UsageError(f"field '{field}' has no numeric values")
    return values
