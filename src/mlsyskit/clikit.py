"""Shared CLI plumbing: consoles and the error-to-exit-code mapping every command group uses."""

from __future__ import annotations

import sys
from typing import Any

import click
import typer
from rich.console import Console
from typer.core import TyperGroup

from mlsyskit.errors import MlsyskitError

# Rich falls back to 80 columns when output is not a terminal (CI logs, `| tee`), which folds
# result tables into unreadable slivers; logs get a wide, fixed width instead.
_LOG_WIDTH = None if sys.stdout.isatty() else 160
console = Console(width=_LOG_WIDTH)
err_console = Console(stderr=True, width=_LOG_WIDTH)


class ErrorMappingGroup(TyperGroup):
    """A command group that turns an ``MlsyskitError`` into a one-line message and its exit code.

    It is set on the root app; sub-apps added with ``add_typer`` run inside the root's ``invoke``,
    so every command of every area gets the same treatment without a decorator each.
    """

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except MlsyskitError as exc:
            err_console.print(f"[bold red]error:[/] {exc}", highlight=False)
            raise click.exceptions.Exit(exc.exit_code) from exc


def new_app(help_text: str) -> typer.Typer:
    """A Typer sub-app with the project's defaults (help on no args, no shell-completion noise)."""
    return typer.Typer(help=help_text, no_args_is_help=True, add_completion=False)
