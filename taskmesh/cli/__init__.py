"""The ``taskmesh`` command line (typer)."""

from __future__ import annotations

from taskmesh.cli import client_cmds as _client_cmds  # noqa: F401  (registers commands)
from taskmesh.cli import entities_cmd as _entities_cmd  # noqa: F401
from taskmesh.cli import node_cmd as _node_cmd  # noqa: F401
from taskmesh.cli import ops_cmds as _ops_cmds  # noqa: F401
from taskmesh.cli import platform_cmds as _platform_cmds  # noqa: F401
from taskmesh.cli.app import app, main

__all__ = ["app", "main"]
