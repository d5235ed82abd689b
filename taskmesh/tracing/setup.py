"""Turning tracing on for one node or client: the OTLP exporter, or a
tracer provider of the user's. Imports OpenTelemetry only when asked to."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from taskmesh.errors import ConfigError

if TYPE_CHECKING:
    from taskmesh.tracing.tracer import Tracing

__all__ = ["EXPORT_TIMEOUT", "start_tracing", "traces_url"]

EXPORT_TIMEOUT = 5.0
"""Seconds one export to the OTLP endpoint may take (so a collector that is
away delays a node's stop by at most about this)."""


def traces_url(endpoint: str) -> str:
    """The OTLP/HTTP traces URL for ``endpoint``: a base URL such as
    ``http://collector:4318`` gets ``/v1/traces``; a URL with a path is
    used as it is. Raises :class:`ConfigError` for anything but http(s)."""
    parts = urlsplit(endpoint)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(
            f"otel endpoint {endpoint!r} must be an OTLP/HTTP URL like http://HOST:4318"
        )
    if parts.path in ("", "/"):
        return endpoint.rstrip("/") + "/v1/traces"
    return endpoint


def start_tracing(
    *, endpoint: str | None, provider: Any, node: str, cluster: str
) -> Tracing | None:
    """The tracing of one node or client, or None when both ``endpoint``
    and ``provider`` are None (tracing off: nothing is imported).

    ``endpoint`` sends spans over OTLP/HTTP (a batch exporter, flushed when
    the node stops); ``provider`` is an OpenTelemetry SDK ``TracerProvider``
    the caller configured and owns. Raises :class:`ConfigError` for both at
    once, a bad URL, or a missing ``taskmesh[otel]`` extra.
    """
    if endpoint is None and provider is None:
        return None
    if endpoint is not None and provider is not None:
        raise ConfigError("give otel_endpoint or tracer_provider, not both")
    url = traces_url(endpoint) if endpoint is not None else None
    try:
        from taskmesh.tracing.tracer import Tracing
    except ImportError as error:
        raise ConfigError(
            f"tracing needs OpenTelemetry: pip install 'taskmesh[otel]' ({error})"
        ) from None
    if url is None:
        return Tracing(provider, node=node, owned=False)
    return Tracing(_otlp_provider(url, node=node, cluster=cluster), node=node, owned=True)


def _otlp_provider(url: str, *, node: str, cluster: str) -> Any:
    try:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
    except ImportError as error:
        raise ConfigError(
            f"--otel-endpoint needs the OTLP exporter: pip install 'taskmesh[otel]' ({error})"
        ) from None
    resource = Resource.create(
        {"service.name": "taskmesh", "service.instance.id": node, "taskmesh.cluster": cluster}
    )
    provider = TracerProvider(resource=resource)
    provider.add_span_processor(
        BatchSpanProcessor(OTLPSpanExporter(endpoint=url, timeout=EXPORT_TIMEOUT))
    )
    return provider
