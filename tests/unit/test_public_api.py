from __future__ import annotations

import importlib

import pytest

import taskmesh


@pytest.mark.parametrize(
    "module", ["taskmesh", "taskmesh.actors", "taskmesh.errors", "taskmesh.platform"]
)
def test_every_exported_name_exists(module: str) -> None:
    mod = importlib.import_module(module)
    missing = [name for name in mod.__all__ if not hasattr(mod, name)]
    assert missing == []


def test_every_error_derives_from_taskmesh_error() -> None:
    from taskmesh import errors

    for name in errors.__all__:
        assert issubclass(getattr(errors, name), taskmesh.TaskmeshError), name


def test_the_user_facing_names_are_at_the_top() -> None:
    for name in ["Actor", "ActorRef", "Supervisor", "Child", "Terminated", "AskTimeout"]:
        assert name in taskmesh.__all__
