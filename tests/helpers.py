"""Helpers the CLI tests share: run `thresher ...` in-process through the real
entry point, and register a command module with that entry point."""
from __future__ import annotations

from typing import Callable

import typer


def run_cli(args, capsys=None, main: Callable | None = None) -> tuple[int, str, str]:
    """Run `thresher ARGS` in-process through `thresher.cli.app.main` (or `main`);
    returns (exit code, stdout, stderr). Without `capsys` the output is left
    uncaptured (the test can read it) and the two strings are empty."""
    if main is None:
        from thresher.cli import app as app_module

        main = app_module.main
    try:
        main([str(a) for a in args])
        code = 0
    except SystemExit as e:
        code = e.code or 0
    out = capsys.readouterr() if capsys else None
    return code, (out.out if out else ""), (out.err if out else "")


def register_command(monkeypatch, name: str, register: Callable[[typer.Typer], None]) -> None:
    """Make `thresher.cli.app.main` register command `name` through `register(app)`
    (a no-op once app.py registers it itself)."""
    from thresher.cli import app as app_module

    original = app_module._register

    def with_command() -> None:
        original()
        if name not in {c.name for c in app_module.app.registered_commands}:
            register(app_module.app)

    monkeypatch.setattr(app_module, "_register", with_command)
