"""Span names, attributes and the small helpers every taskmesh span uses.

Attribute names follow OpenTelemetry's messaging conventions where one
fits (``messaging.*``, ``server.*``, ``network.peer.*``, ``error.type``);
the rest are ``taskmesh.*``.
"""

from __future__ import annotations

from types import TracebackType
from typing import Any, Final

from opentelemetry.context import attach, detach
from opentelemetry.trace import Span, Status, StatusCode, set_span_in_context

__all__ = ["SYSTEM", "Current", "failed", "peer_attributes"]

SYSTEM: Final = "taskmesh"
"""``messaging.system`` of every span."""

MESSAGING_SYSTEM: Final = "messaging.system"
OPERATION_TYPE: Final = "messaging.operation.type"
OPERATION_NAME: Final = "messaging.operation.name"
DESTINATION: Final = "messaging.destination.name"
ERROR_TYPE: Final = "error.type"
NODE: Final = "taskmesh.node"
"""The node (or client) that recorded the span."""
CAPABILITIES: Final = "taskmesh.actor.capabilities"
MESSAGE: Final = "taskmesh.message"
"""``tell`` or ``ask``: what a process span handles."""


def failed(span: Span, error: BaseException) -> None:
    """Record ``error`` on ``span``: exception event, ERROR status, ``error.type``."""
    span.record_exception(error)
    span.set_status(Status(StatusCode.ERROR, f"{type(error).__name__}: {error}"))
    span.set_attribute(ERROR_TYPE, type(error).__qualname__)


class Current:
    """``with Current(span):`` makes ``span`` the current span in this
    thread (or task) for the block, records an exception that escapes it,
    and ends the span. (OpenTelemetry's ``use_span`` does this too, but sets
    no ``error.type`` and costs a generator per message.)"""

    __slots__ = ("_span", "_token")

    def __init__(self, span: Span) -> None:
        self._span = span

    def __enter__(self) -> Span:
        self._token = attach(set_span_in_context(self._span))
        return self._span

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if error is not None:
            failed(self._span, error)
        self._span.end()
        detach(self._token)


def peer_attributes(address: str, prefix: str) -> dict[str, Any]:
    """``{prefix}.address`` and ``{prefix}.port`` of a ``tcp://HOST:PORT``
    transport address (``server`` for a send, ``network.peer`` for a process
    span); the address whole for anything else."""
    if address.startswith("tcp://"):
        host, _, port = address[6:].rpartition(":")
        if host and port.isdigit():
            return {f"{prefix}.address": host.strip("[]"), f"{prefix}.port": int(port)}
    return {f"{prefix}.address": address}
