from __future__ import annotations

from collections.abc import Iterator

import pytest

from taskmesh.cluster import EmbeddedEtcd
from tests.integration.tracing.otlp import OtlpReceiver


@pytest.fixture(scope="module")
def etcd_url() -> Iterator[str]:
    """A real etcd for this module's nodes (a missing binary fails, never skips)."""
    server = EmbeddedEtcd().start()
    try:
        yield server.endpoint
    finally:
        server.close()


@pytest.fixture
def otlp() -> Iterator[OtlpReceiver]:
    """A real OTLP/HTTP receiver the nodes export their spans to."""
    receiver = OtlpReceiver()
    try:
        yield receiver
    finally:
        receiver.close()
