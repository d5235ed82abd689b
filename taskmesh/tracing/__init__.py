"""taskmesh.tracing: one trace per request, across nodes (OpenTelemetry).

Off unless a node or client is given an OTLP endpoint or a tracer provider
(``taskmesh node --otel-endpoint URL``, ``Node(otel_endpoint=...)``,
``connect(..., tracer_provider=...)``); it needs the ``taskmesh[otel]``
extra, and OpenTelemetry is imported only then. With it on, every tell and
ask a node or client sends to another node carries the W3C trace context
(``traceparent``, ``tracestate``) in its envelope, and these spans are
recorded, after OpenTelemetry's messaging conventions:

- ``tell NAME`` / ``ask NAME`` (kind PRODUCER), in the sender's thread,
  child of the current span (a user's span around ``client.ask`` is its
  parent); an ask's span lasts until its answer or error;
- ``process NAME`` (CONSUMER) on the receiving node, around the actor's
  ``receive`` on the thread (or event loop) that runs it, child of the
  send span; it is current there, so what the actor sends on is its child;
- ``ask ... with retries`` (INTERNAL) around all the attempts of an ask
  with ``retries``, with a ``retry`` event for each retry.

Sends to the runtime's own actors (names starting with ``_``: the cluster
page's queries, workflow bookkeeping) are traced only inside a trace that
is already going, so a dashboard polling in the background starts none.

How it hooks in (and why untraced messages pay nothing): the transport
swaps in :class:`~taskmesh.tracing.sender.TracedSender`, wraps traced
payloads as they arrive (:mod:`taskmesh.transport.traced`), and the actor
cells handle those under a mailbox kind of their own
(:mod:`taskmesh.actors.traced`); with tracing off none of it exists.
"""

from __future__ import annotations

from taskmesh.tracing.setup import start_tracing

__all__ = ["start_tracing"]
