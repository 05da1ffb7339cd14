"""The `thresher` command: one typer app, one module per command group."""
from __future__ import annotations

import sys

import typer

from thresher.errors import ThresherError

app = typer.Typer(
    name="thresher",
    help="Pick the training data that makes an LLM fine-tune work, and prove it.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _register() -> None:
    from thresher.cli import (active, augment, balance, bootstrap, check, evaluate, featurize, generate, inspect,
                              report, sample, select, size, train)

    for module in (inspect, sample, size, check, bootstrap, featurize, select, balance, augment, generate, active,
                   train, evaluate, report):
        module.register(app)


def main(argv: list[str] | None = None) -> None:
    """Console entry point: user errors print one line and exit 2, never a traceback."""
    _register()
    try:
        app(args=argv, standalone_mode=False)
    except ThresherError as err:
        typer.echo(f"error: {err}", err=True)
        sys.exit(err.exit_code)
    except typer.Abort:
        sys.exit(130)
    except Exception as err:  # click usage errors arrive here in non-standalone mode
        import click

        if isinstance(err, click.ClickException):
            err.show()
            sys.exit(2)
        raise
    sys.exit(0)


if __name__ == "__main__":
    main()
