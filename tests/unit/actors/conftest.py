from __future__ import annotations

from collections.abc import Iterator

import pytest

import taskmesh
from taskmesh.actors import Backoff
from tests.unit.actors.support import Journal, Kind


@pytest.fixture
def system() -> Iterator[taskmesh.ActorSystem]:
    s = taskmesh.ActorSystem(backoff=Backoff(initial=0), ask_timeout=10.0)
    try:
        yield s
    finally:
        s.stop()


@pytest.fixture(params=["thread", "async"])
def kind(request: pytest.FixtureRequest) -> Kind:
    """Runs a test once with threaded and once with async actors:
    ``kind(Worker)`` is the test actor of that kind."""
    return Kind(request.param)


@pytest.fixture
def journal() -> Journal:
    return Journal()
