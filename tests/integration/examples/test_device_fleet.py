"""examples/device_fleet.py, run as a newcomer runs it."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]

pytestmark = pytest.mark.integration


def test_the_device_fleet_keeps_every_reading_when_a_node_is_killed() -> None:
    done = subprocess.run(
        [sys.executable, "examples/device_fleet.py", "--devices", "12"],
        capture_output=True, text=True, timeout=300, cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)}, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "12 devices across ['edge-1', 'edge-2']" in done.stdout
    held = re.search(r"killed edge-1 \(kill -9\), which held (\d+) devices", done.stdout)
    assert held is not None and int(held.group(1)) > 0, done.stdout
    assert "after the loss: 12 devices on ['edge-2'], readings kept: 12/12" in done.stdout
    assert "fleet stopped" in done.stdout
