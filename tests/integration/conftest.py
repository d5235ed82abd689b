"""Fixtures shared by the integration tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from taskmesh.cluster import EmbeddedEtcd


@pytest.fixture(scope="module")
def etcd_url() -> Iterator[str]:
    """A real etcd for one test module's nodes (a missing binary fails, never skips)."""
    server = EmbeddedEtcd().start()
    try:
        yield server.endpoint
    finally:
        server.close()
