from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.integration.tracing.otlp import OtlpReceiver


@pytest.fixture
def otlp() -> Iterator[OtlpReceiver]:
    """A real OTLP/HTTP receiver the nodes export their spans to."""
    receiver = OtlpReceiver()
    try:
        yield receiver
    finally:
        receiver.close()
