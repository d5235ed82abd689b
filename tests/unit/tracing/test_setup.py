"""Turning tracing on: endpoints, providers, and nothing imported when off."""

from __future__ import annotations

import subprocess
import sys

import pytest
from opentelemetry.sdk.trace import TracerProvider

from taskmesh.errors import ConfigError
from taskmesh.tracing import start_tracing
from taskmesh.tracing.setup import traces_url


@pytest.mark.parametrize(
    ("endpoint", "url"),
    [
        ("http://collector:4318", "http://collector:4318/v1/traces"),
        ("http://collector:4318/", "http://collector:4318/v1/traces"),
        ("https://otel.example/v1/traces", "https://otel.example/v1/traces"),
        ("http://gateway/otlp/v1/traces", "http://gateway/otlp/v1/traces"),
    ],
)
def test_a_base_url_gets_the_otlp_traces_path(endpoint: str, url: str) -> None:
    assert traces_url(endpoint) == url


@pytest.mark.parametrize("endpoint", ["collector:4318", "grpc://collector:4317", "http://"])
def test_an_endpoint_that_is_no_http_url_is_refused(endpoint: str) -> None:
    with pytest.raises(ConfigError, match="OTLP/HTTP URL"):
        start_tracing(endpoint=endpoint, provider=None, node="n", cluster="c")


def test_tracing_is_off_unless_asked_for_and_takes_one_destination() -> None:
    assert start_tracing(endpoint=None, provider=None, node="n", cluster="c") is None
    with pytest.raises(ConfigError, match="not both"):
        start_tracing(endpoint="http://c:4318", provider=TracerProvider(), node="n", cluster="c")


def test_an_endpoint_exports_from_a_provider_of_the_nodes_own() -> None:
    tracing = start_tracing(endpoint="http://127.0.0.1:9/", provider=None, node="n1", cluster="c")
    assert tracing is not None
    try:
        resource = tracing.provider.resource.attributes
        assert resource["service.name"] == "taskmesh"
        assert resource["service.instance.id"] == "n1"
        assert resource["taskmesh.cluster"] == "c"
    finally:
        tracing.close()


def test_a_missing_extra_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "taskmesh.tracing.tracer", None)  # import fails
    with pytest.raises(ConfigError, match=r"pip install 'taskmesh\[otel\]'"):
        start_tracing(endpoint=None, provider=TracerProvider(), node="n", cluster="c")


def test_the_core_imports_no_opentelemetry() -> None:
    code = (
        "import sys, taskmesh, taskmesh.cli.node_cmd\n"
        "print(sorted(m for m in sys.modules if m.startswith('opentelemetry')))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert out.stdout.strip() == "[]"
