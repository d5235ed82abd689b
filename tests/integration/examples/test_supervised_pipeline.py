from __future__ import annotations

import subprocess
import sys
from pathlib import Path

EXAMPLE = Path(__file__).resolve().parents[3] / "examples" / "supervised_pipeline.py"


def test_the_supervised_pipeline_example_survives_its_crashing_stage() -> None:
    done = subprocess.run(
        [sys.executable, str(EXAMPLE)], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert "writer holds: [{'a': '1'}, {'b': '2'}, {'c': '3'}, {'d': '4'}]" in out
    assert out.count("parser restarted after: ValueError") == 2
    assert "the asker sees the crash" in out
    assert "restarts: 2, dead letters: 0" in out
