"""The typer application behind the ``taskmesh`` command."""

from __future__ import annotations

from typing import Annotated

import typer

from taskmesh import __version__

__all__ = ["app", "main"]

app = typer.Typer(
    name="taskmesh",
    help="Supervised actor trees across machines, with no broker.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"taskmesh {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option("--version", callback=_version, is_eager=True, help="Print the version."),
    ] = False,
) -> None:
    """Supervised actor trees across machines, with no broker."""


@app.command()
def version() -> None:
    """Print the version."""
    typer.echo(f"taskmesh {__version__}")


def main() -> None:
    """Console-script entry point."""
    app()
