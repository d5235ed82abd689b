"""Trace context on the wire, with two transports in this process (real sockets)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import msgpack
import pytest
import zmq
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from taskmesh.actors.future import ReplyTo
from taskmesh.actors.traced import Traced
from taskmesh.errors import ActorNotFound, AskTimeout
from taskmesh.tracing.tracer import Tracing
from taskmesh.transport import Transport
from taskmesh.transport.envelope import ASK, TELL
from tests.waiting import wait_until

pytestmark = pytest.mark.integration

PARENT = {"traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"}


class Receiver:
    """A deliver function: keeps what it gets, answers asks unless told not to."""

    def __init__(self) -> None:
        self.got: list[Any] = []
        self.lock = threading.Lock()

    def __call__(
        self, target: str, message: Any, reply: ReplyTo | None, deadline: Any, key: Any = None
    ) -> None:
        if target == "nobody":
            raise ActorNotFound("nobody")
        with self.lock:
            self.got.append(message)
        if reply is not None and target != "silent":
            reply.set("ok")


def tracing(node: str) -> tuple[Tracing, InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return Tracing(provider, node=node, owned=True), exporter


@pytest.fixture
def plain_server() -> Iterator[tuple[Transport, Receiver]]:
    receiver = Receiver()
    server = Transport(deliver=receiver)
    server.start()
    yield server, receiver
    server.stop()


def test_a_node_with_tracing_off_takes_traced_messages_and_refuses_malformed_ones(
    plain_server: tuple[Transport, Receiver],
) -> None:
    server, receiver = plain_server
    sender_tracing, _ = tracing("c")
    client = Transport(listen=None, tracing=sender_tracing)
    client.start()
    context = zmq.Context()
    raw = context.socket(zmq.DEALER)
    raw.setsockopt(zmq.LINGER, 0)
    try:
        ref = client.ref(server.address, "a")
        with sender_tracing.tracer.start_as_current_span("user"):
            ref.tell("told")
            assert ref.ask("asked", timeout=10) == "ok"
        raw.connect(server.address)
        raw.send(
            msgpack.packb(
                [1, "tcp://fuzz:1",
                 [TELL, "a", 0, None, "first", None, PARENT],
                 [TELL, "a", 0, None, "bad", None, ["not", "headers"]],
                 [ASK, "a", "7", None, "bad", "key", PARENT],  # a cid must be an int
                 [TELL, "a", 0, None, "last"]]
            )
        )  # fmt: skip
        wait_until(lambda: len(receiver.got) >= 4, message="four deliveries")
        assert receiver.got == ["told", "asked", "first", "last"]
        assert server.snapshot()["malformed_frames"] == 2
    finally:
        raw.close()
        context.term()
        client.stop()


def sent(exporter: InMemorySpanExporter, name: str) -> ReadableSpan:
    return wait_until(
        lambda: next((s for s in exporter.get_finished_spans() if s.name == name), None),
        message=f"span {name!r}",
    )


def test_sends_are_spans_whose_context_travels_to_the_receiver() -> None:
    receiver = Receiver()
    server_tracing, _ = tracing("server")
    server = Transport(deliver=receiver, tracing=server_tracing)
    server.start()
    client_tracing, exporter = tracing("client")
    client = Transport(listen=None, tracing=client_tracing, heartbeat_interval=0.05)
    client.start()
    try:
        refs = {name: client.ref(server.address, name) for name in ("a", "nobody", "silent")}
        with client_tracing.tracer.start_as_current_span("user") as user:
            refs["a"].tell("told")
            assert refs["a"].ask("asked", timeout=10) == "ok"
            with pytest.raises(ActorNotFound):
                refs["nobody"].ask("x", timeout=10)
            with pytest.raises(AskTimeout):
                refs["silent"].ask("x", timeout=0.2)
        client.ref(server.address, "_ops").tell("outside any trace")
        wait_until(lambda: len(receiver.got) == 4, message="four deliveries")
    finally:
        client.stop()
        server.stop()

    told, asked, missing, silent = (
        sent(exporter, name) for name in ("tell a", "ask a", "ask nobody", "ask silent")
    )
    for span in (told, asked, missing, silent):
        assert span.parent is not None and span.parent.span_id == user.get_span_context().span_id
        assert span.kind is SpanKind.PRODUCER
        assert (span.attributes or {})["taskmesh.node"] == "client"
    assert (told.attributes or {})["messaging.operation.name"] == "tell"
    assert (asked.attributes or {})["server.port"] == int(server.address.rsplit(":", 1)[1])
    assert asked.status.status_code is StatusCode.UNSET
    assert (missing.attributes or {})["error.type"] == "ActorNotFound"
    assert (silent.attributes or {})["error.type"] == "AskTimeout"
    assert not any(s.name.endswith("_ops") for s in exporter.get_finished_spans())

    # The receiver got the send spans' own contexts; the runtime's message none.
    traced = receiver.got[:3]
    assert all(type(m) is Traced for m in traced)
    assert [m.message for m in traced] == ["told", "asked", "x"]
    parents = [m.scope._headers["traceparent"].split("-")[2] for m in traced]
    assert parents == [f"{s.context.span_id:016x}" for s in (told, asked, silent)]
    assert receiver.got[3] == "outside any trace"
