"""The entities package stays in small modules named after their concept."""

from __future__ import annotations

from pathlib import Path

import taskmesh.entities

PACKAGE = Path(taskmesh.entities.__file__).parent


def test_every_entities_module_stays_under_four_hundred_lines() -> None:
    lengths = {p.name: len(p.read_text().splitlines()) for p in PACKAGE.glob("*.py")}
    assert len(lengths) >= 10
    assert {name: n for name, n in lengths.items() if n > 400} == {}
