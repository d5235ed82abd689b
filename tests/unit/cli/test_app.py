from __future__ import annotations

import subprocess
import sys

from typer.testing import CliRunner

import taskmesh
from taskmesh.cli import app


def test_version_flag_prints_the_version() -> None:
    result = CliRunner().invoke(app, ["--version"])
    assert result.exit_code == 0
    assert result.output.strip() == f"taskmesh {taskmesh.__version__}"


def test_the_console_script_runs() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "taskmesh", "--help"], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert "Usage" in done.stdout
