"""The transport's modules read top to bottom: no import circle, none too long."""

from __future__ import annotations

import ast
from pathlib import Path

import taskmesh.transport

PACKAGE = Path(taskmesh.transport.__file__).parent
PREFIX = "taskmesh.transport."


def imports_within_the_package(path: Path) -> set[str]:
    """Modules of the package this one imports, TYPE_CHECKING imports included."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith(PREFIX):
            found.add(node.module.removeprefix(PREFIX))
        elif isinstance(node, ast.Import):
            found |= {a.name.removeprefix(PREFIX) for a in node.names if a.name.startswith(PREFIX)}
    return found


def test_no_module_of_the_transport_imports_itself_back() -> None:
    graph = {p.stem: imports_within_the_package(p) for p in PACKAGE.glob("*.py")}
    graph.pop("__init__")
    done: set[str] = set()

    def visit(module: str, path: tuple[str, ...]) -> None:
        if module in path:
            raise AssertionError("import circle: " + " -> ".join((*path, module)))
        if module in done:
            return
        for imported in graph.get(module, ()):
            visit(imported, (*path, module))
        done.add(module)

    for module in graph:
        visit(module, ())
    assert len(done) == len(graph) >= 10


def test_every_transport_module_stays_under_four_hundred_lines() -> None:
    lengths = {p.name: len(p.read_text().splitlines()) for p in PACKAGE.glob("*.py")}
    assert {name: n for name, n in lengths.items() if n > 400} == {}
