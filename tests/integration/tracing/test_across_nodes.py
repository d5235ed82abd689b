"""One trace across a client and two real ``taskmesh node`` processes.

The nodes run with ``--otel-endpoint`` and export over OTLP/HTTP to a
receiver this test starts; the client in this process records into memory
with the OpenTelemetry SDK. The test checks what a user reads in a trace
viewer: which span is whose parent, on which node, with which attributes.
"""

from __future__ import annotations

import signal
import uuid
from typing import Any

import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode

import taskmesh
from tests.integration.node.support import NodeProcess
from tests.integration.tracing.otlp import OtlpReceiver, Received
from tests.waiting import wait_until

pytestmark = pytest.mark.integration


def only(spans: list[Received], error: bool | None = None, **attributes: Any) -> Received:
    """The one span whose attributes include ``attributes`` (and that failed
    or not, when ``error`` is given)."""
    found = [
        s for s in spans if attributes.items() <= s.attributes.items() and error in (None, s.error)
    ]
    assert len(found) == 1, (attributes, spans)
    return found[0]


def test_a_users_span_is_the_root_of_what_happens_on_both_nodes(
    etcd_url: str, otlp: OtlpReceiver
) -> None:
    cluster = "t" + uuid.uuid4().hex[:8]
    common = ("--etcd", etcd_url, "--cluster", cluster, "--otel-endpoint", otlp.url,
              "--lease-ttl", "10", "--log-level", "WARNING")  # fmt: skip
    a = NodeProcess(*common, "--app", "tests.integration.tracing.apps:node_a", name="a")
    b = NodeProcess(*common, "--app", "tests.integration.tracing.apps:node_b", name="b")
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("test")
    try:
        a.wait_ready()
        b.wait_ready()
        nodes = {"a": a, "b": b}
        with taskmesh.connect(etcd=etcd_url, cluster=cluster, tracer_provider=provider) as client:
            wait_until(
                lambda: (
                    {"front", "back"} <= set(client.actors())
                    and len(client.routes().get("work", [])) == 2
                ),
                message="both nodes' actors",
            )
            with tracer.start_as_current_span("checkout") as checkout:
                answer = client.ask("front", {"order": 42}, timeout=20.0)
            assert answer == {"back": {"order": 42}, "node": "b"}
            with (
                tracer.start_as_current_span("refund") as refund,
                pytest.raises(taskmesh.RemoteError),
            ):
                client.ask("front", {"fail": "no stock"}, timeout=20.0)

            # A retry: the holder the key maps to freezes mid-ask (as if cut
            # off); the ask is retried on the other node within its timeout.
            work = client.capability("work", strategy="consistent_hash")
            frozen = work.ask("who", key="k", timeout=20.0)
            nodes[frozen].proc.send_signal(signal.SIGSTOP)
            try:
                with tracer.start_as_current_span("retrying") as retrying:
                    other = work.ask("who", key="k", timeout=30.0, retries=2)
            finally:
                nodes[frozen].proc.send_signal(signal.SIGCONT)
            assert other != frozen
        assert a.terminate() == 0 and b.terminate() == 0  # a stop exports what is left
    finally:
        a.close()
        b.close()

    local = exporter.get_finished_spans()

    def child(name: str, parent: ReadableSpan | Any) -> ReadableSpan:
        """The one span of this process named ``name`` under ``parent``."""
        parent_id = parent.get_span_context().span_id
        [span] = [s for s in local if s.name == name and s.parent and s.parent.span_id == parent_id]
        return span

    trace_id = checkout.get_span_context().trace_id

    # client -> a: the user's span is the parent of the send, the send of the process
    send_front = child("ask front", checkout)
    assert send_front.status.status_code is StatusCode.UNSET
    process_front = only(otlp.named("process front"), error=False)
    assert process_front.trace_id == trace_id
    assert process_front.parent_id == send_front.context.span_id
    assert process_front.kind == "CONSUMER" and process_front.service_instance == "a"
    assert {
        "messaging.system": "taskmesh",
        "messaging.destination.name": "front",
        "taskmesh.node": "a",
        "taskmesh.actor.capabilities": ["front"],
    }.items() <= process_front.attributes.items()

    # a -> b, from inside the actor: a tell and an ask, children of its process span
    for operation in ("tell", "ask"):
        send = only(otlp.named(f"{operation} back"), **{"taskmesh.node": "a"})
        process = only(otlp.named("process back"), **{"taskmesh.message": operation})
        assert send.kind == "PRODUCER" and send.trace_id == trace_id
        assert send.parent_id == process_front.span_id
        assert process.parent_id == send.span_id and process.trace_id == trace_id
        assert process.attributes["taskmesh.node"] == "b"
        assert process.attributes["taskmesh.actor.capabilities"] == ["back"]

    # a failure is on the remote process span and on the caller's send span
    failed_send = child("ask front", refund)
    assert failed_send.status.status_code is StatusCode.ERROR
    failed = only(otlp.named("process front"), error=True)
    assert failed.parent_id == failed_send.context.span_id
    assert failed.attributes["error.type"] == "ValueError"

    # the retry: one span around both attempts, an event for the retry
    around = child("ask holding 'work' with retries", retrying)
    assert (around.attributes or {})["taskmesh.ask.retried"] == 1
    [(event, details)] = [(e.name, dict(e.attributes or {})) for e in around.events]
    assert event == "retry"
    assert details["taskmesh.ask.node"] == frozen
    assert details["error.type"] == "PeerUnreachable"
    first, second = child("ask work-" + frozen, around), child("ask work-" + other, around)
    assert first.status.status_code is StatusCode.ERROR
    assert second.status.status_code is StatusCode.UNSET
    served = only(otlp.named("process work-" + other), **{"taskmesh.node": other})
    assert served.parent_id == second.context.span_id
