from __future__ import annotations

import pytest

import taskmesh
from taskmesh.actors import ActorSystem, validate_capability, validate_name
from tests.unit.actors.support import Kind, Worker


@pytest.mark.parametrize("name", ["echo", "image.resize", "camera:dock-3", "_x", "a@b", "A" * 128])
def test_valid_names_are_accepted(name: str) -> None:
    assert validate_name(name) == name
    assert validate_capability(name) == name


@pytest.mark.parametrize("name", ["", "a/b", "-x", ".x", "a b", "é", "A" * 129, "x\n"])
def test_invalid_names_are_refused(name: str) -> None:
    with pytest.raises(taskmesh.InvalidName):
        validate_name(name)


def test_a_name_that_is_not_a_string_is_refused() -> None:
    with pytest.raises(taskmesh.InvalidName, match="must be a str"):
        validate_name(42)


def test_spawn_refuses_a_duplicate_name(system: ActorSystem, kind: Kind) -> None:
    system.spawn(kind(Worker), name="w")
    with pytest.raises(taskmesh.NameTaken):
        system.spawn(kind(Worker), name="w")


def test_spawn_refuses_an_invalid_name(system: ActorSystem, kind: Kind) -> None:
    with pytest.raises(taskmesh.InvalidName):
        system.spawn(kind(Worker), name="no/slash")


def test_spawn_without_a_name_generates_one(system: ActorSystem, kind: Kind) -> None:
    ref = system.spawn(kind(Worker))
    assert ref.name.startswith("_worker-")
    assert ref.ask(1) == 1
