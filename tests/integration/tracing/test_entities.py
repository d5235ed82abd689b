"""Trace context reaches sharded entities on a real ``taskmesh node``.

The node runs with ``--otel-endpoint`` and hosts an entity type; the
client in this process records its own spans into memory. Every message to
an entity, the one that activates it and those to the active entity, is
handled in a ``process`` span on the node whose parent is the client's
send span.
"""

from __future__ import annotations

import uuid

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import taskmesh
from tests.integration.node.support import NodeProcess
from tests.integration.tracing.otlp import OtlpReceiver

pytestmark = pytest.mark.integration


def test_messages_to_entities_are_processed_in_the_senders_trace(
    etcd_url: str, otlp: OtlpReceiver
) -> None:
    cluster = "t" + uuid.uuid4().hex[:8]
    node = NodeProcess(
        "--etcd", etcd_url, "--cluster", cluster, "--otel-endpoint", otlp.url,
        "--log-level", "WARNING", "--app", "tests.integration.tracing.apps:entities", name="e",
    )  # fmt: skip
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("test")
    try:
        node.wait_ready()
        with taskmesh.connect(etcd=etcd_url, cluster=cluster, tracer_provider=provider) as client:
            # The shard map is read and the shards placed before the trace.
            assert client.entity("meter", "m-0").ask("warm", timeout=30.0, retries=20)
            meter = client.entity("meter", "m-1")
            with tracer.start_as_current_span("readings") as readings:
                answers = [meter.ask("r", timeout=20.0) for _ in range(3)]
                meter.tell("r")
                last = meter.ask("r", timeout=20.0)
            assert [a["readings"] for a in answers] == [1, 2, 3]
            assert last == {"meter": "m-1", "readings": 5}
        assert node.terminate() == 0  # a stop exports what is left
    finally:
        node.close()

    trace_id = readings.get_span_context().trace_id
    sends = {
        span.context.span_id: span.name
        for span in exporter.get_finished_spans()
        if span.parent is not None and span.parent.span_id == readings.get_span_context().span_id
    }
    assert len(sends) == 5, sends  # four asks and a tell, each a span of its own
    processed = otlp.named("process meter/m-1")
    assert len(processed) == 5, processed
    for span in processed:
        assert span.trace_id == trace_id
        assert span.parent_id in sends
        assert span.kind == "CONSUMER" and span.service_instance == "e"
        assert span.attributes["taskmesh.node"] == "e"
    assert len({span.parent_id for span in processed}) == 5  # one per message
