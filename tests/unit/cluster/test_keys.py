"""Key layout, record codec and name validation."""

from __future__ import annotations

import pytest

from taskmesh.cluster.keys import ClusterKeys, decode, encode, validate_name
from taskmesh.errors import InvalidName


@pytest.mark.parametrize("name", ["echo", "image.resize", "camera:dock-3", "_x", "a@b", "9" * 128])
def test_valid_names_are_accepted(name: str) -> None:
    assert validate_name(name) == name


@pytest.mark.parametrize("name", ["", "-x", ".x", "a/b", "a b", "é", "9" * 129])
def test_invalid_names_are_refused(name: str) -> None:
    with pytest.raises(InvalidName):
        validate_name(name)


def test_every_key_of_a_cluster_lives_under_its_root() -> None:
    keys = ClusterKeys("demo")
    assert keys.member("n1") == "/taskmesh/demo/members/n1"
    assert keys.name("echo") == "/taskmesh/demo/names/echo"
    assert keys.route("gpu", "n1", "a") == "/taskmesh/demo/routes/gpu/n1/a"
    assert keys.placement("s") == "/taskmesh/demo/placements/s"
    assert ClusterKeys.tail(keys.names, keys.name("echo")) == "echo"


def test_a_cluster_name_must_be_valid() -> None:
    with pytest.raises(InvalidName):
        ClusterKeys("a/b")


def test_records_round_trip_and_garbage_decodes_to_empty() -> None:
    assert decode(encode({"node": "n", "n": 1})) == {"node": "n", "n": 1}
    assert decode(b"\xff not json") == {}
    assert decode(b"[1, 2]") == {}
