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
    from thresher.cli.terminal import printable

    _register()
    try:
        app(args=argv, standalone_mode=False)
    except ThresherError as err:
        typer.echo(f"error: {printable(err)}", err=True)  # messages quote the data: keep them inert
        sys.exit(err.exit_code)
    except typer.Abort:
        sys.exit(130)
    except OSError as err:  # an I/O fault no reader or writer translated: still one line, not a traceback
        where = f"{err.filename}: " if err.filename else ""
        typer.echo(f"error: {printable(where)}{printable(err.strerror or err)}", err=True)
        sys.exit(2)
    except Exception as err:  # usage errors arrive here in non-standalone mode
        if _is_click_error(err):
            err.show()
            sys.exit(getattr(err, "exit_code", 2) or 2)
        raise
    sys.exit(0)


def _is_click_error(err: Exception) -> bool:
    """Click's, or the copy typer vendors (typer._click), whichever parsed the arguments."""
    import click

    return isinstance(err, click.ClickException) or (hasattr(err, "show") and isinstance(err, typer.TyperException))


if __name__ == "__main__":
    main()
