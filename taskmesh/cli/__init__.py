"""The ``taskmesh`` command line (typer)."""

from __future__ import annotations

from taskmesh.cli.app import app, main

__all__ = ["app", "main"]
