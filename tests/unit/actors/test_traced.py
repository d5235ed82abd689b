"""Messages that came with a trace context are handled inside their span,
wherever the actor runs, and otherwise exactly like untraced ones."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any, cast

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

import taskmesh
from taskmesh.actors import ActorSystem, Child, Reply, Supervisor
from taskmesh.actors.threadcell import ThreadCell
from taskmesh.actors.traced import Traced
from taskmesh.tracing.tracer import Tracing
from tests.unit.actors.support import Both, Gate, Kind
from tests.waiting import wait_until

SENDER = "tcp://127.0.0.1:5555"


class Traces:
    """A receiving node's tracing (in memory) and a remote sender's span."""

    def __init__(self) -> None:
        self.exporter = InMemorySpanExporter()
        provider = TracerProvider()
        provider.add_span_processor(SimpleSpanProcessor(self.exporter))
        self.tracing = Tracing(provider, node="n1", owned=True)
        self.remote = TracerProvider().get_tracer("remote")

    def message(self, payload: Any, *, ask: bool = False) -> tuple[Traced, int]:
        """``payload`` as it arrives from a sender span; and that span's id."""
        with self.remote.start_as_current_span("send") as span:
            headers: dict[str, str] = {}
            TraceContextTextMapPropagator().inject(headers)
        return self.tracing.received(payload, headers, SENDER, ask), span.get_span_context().span_id

    def spans(self, count: int) -> list[ReadableSpan]:
        return wait_until(
            lambda: (s := self.exporter.get_finished_spans()) and len(s) >= count and list(s),
            message=f"{count} finished spans",
        )


@pytest.fixture
def traces() -> Traces:
    return Traces()


class Spy(Both):
    """Answers with the span current while it handles the message."""

    capabilities = ("spying", "gpu")

    def __init__(self, gate: Gate | None = None) -> None:
        self.gate = gate

    async def handle(self, message: Any) -> Any:
        span_id = trace.get_current_span().get_span_context().span_id
        if message == "boom":
            raise ValueError("boom")
        if message == "wait":
            assert self.gate is not None
            await self.gate.wait()
        return {"message": message, "span": span_id}


def ask(system: ActorSystem, name: str, traced: Traced, timeout: float = 10.0) -> Any:
    reply = Reply()
    assert system.deliver_traced(name, traced, reply, time.monotonic() + timeout) is None
    return reply.get(timeout)


def test_a_traced_ask_runs_inside_a_process_span_that_is_the_senders_child(
    system: ActorSystem, kind: Kind, traces: Traces
) -> None:
    system.spawn(kind(Spy), name="spy")
    traced, parent = traces.message({"n": 1}, ask=True)
    answer = ask(system, "spy", traced)
    [span] = traces.spans(1)
    assert answer == {"message": {"n": 1}, "span": span.context.span_id}
    assert span.parent is not None and span.parent.span_id == parent
    assert span.name == "process spy" and span.kind is SpanKind.CONSUMER
    assert dict(span.attributes or {}) == {
        "messaging.system": "taskmesh",
        "messaging.operation.type": "process",
        "messaging.operation.name": "process",
        "messaging.destination.name": "spy",
        "taskmesh.node": "n1",
        "taskmesh.actor.capabilities": ("spying", "gpu"),
        "taskmesh.message": "ask",
        "network.peer.address": "127.0.0.1",
        "network.peer.port": 5555,
    }
    assert trace.get_current_span() is trace.INVALID_SPAN  # nothing leaked to this thread


def test_a_failure_is_recorded_on_the_span_and_the_supervisor_still_restarts(
    system: ActorSystem, kind: Kind, traces: Traces
) -> None:
    system.spawn(Supervisor, name="sup", children=[Child(kind(Spy), name="spy")])
    with pytest.raises(ValueError, match="boom"):
        ask(system, "spy", traces.message("boom", ask=True)[0])
    assert ask(system, "spy", traces.message("after", ask=True)[0])["message"] == "after"
    failed, ok = sorted(traces.spans(2), key=lambda s: s.start_time or 0)
    assert failed.status.status_code is StatusCode.ERROR
    assert (failed.attributes or {})["error.type"] == "ValueError"
    assert [e.name for e in failed.events] == ["exception"]
    assert ok.status.status_code is StatusCode.UNSET
    assert system.restart_count == 1


def test_a_retried_message_is_traced_at_every_attempt_and_dead_letters_carry_the_message(
    system: ActorSystem, kind: Kind, traces: Traces
) -> None:
    system.spawn(
        Supervisor, name="sup", max_restarts=10,
        children=[Child(kind(Spy), name="spy", max_attempts=2)],
    )  # fmt: skip
    with pytest.raises(ValueError):
        ask(system, "spy", traces.message("boom", ask=True)[0])
    spans = traces.spans(2)
    assert [s.name for s in spans] == ["process spy"] * 2
    # Recorded just after the asker hears the failure (the actor's thread).
    letters = wait_until(
        lambda: [d for d in system.dead_letters.recent() if d.reason == "poison"],
        message="the poison dead letter",
    )
    assert [d.message for d in letters] == ["boom"]


def test_traced_tells_to_a_missing_or_stopped_actor_are_dead_letters_of_the_message(
    system: ActorSystem, kind: Kind, traces: Traces
) -> None:
    gate = Gate()
    system.spawn(kind(Spy), name="spy", gate=gate)
    assert system.deliver_traced("ghost", traces.message("lost")[0], None, None) is None
    with pytest.raises(taskmesh.ActorNotFound):
        system.deliver_traced("ghost", traces.message("lost", ask=True)[0], Reply(), None)
    system.deliver_traced("spy", traces.message("wait")[0], None, None)
    wait_until(lambda: system.mailbox_depths()["spy"] == 0, message="the actor took 'wait'")
    system.deliver_traced("spy", traces.message("queued")[0], None, None)
    assert system.stop_actor("spy", timeout=0) is False  # posted: overtakes 'queued'
    gate.set()
    wait_until(lambda: system.info("spy") is None, message="the actor stopped")
    letters = {(d.recipient, d.message, d.reason) for d in system.dead_letters.recent()}
    assert ("ghost", "lost", "actor_not_found") in letters
    assert ("spy", "queued", "actor_stopped") in letters
    assert not any(isinstance(d.message, Traced) for d in system.dead_letters.recent())


def test_an_expired_traced_ask_is_answered_with_a_timeout_and_not_handled(
    system: ActorSystem, kind: Kind, traces: Traces
) -> None:
    gate = Gate()
    ref = system.spawn(kind(Spy), name="spy", gate=gate)
    busy = ref.ask_async("wait", timeout=30)
    reply = Reply()
    system.deliver_traced("spy", traces.message("late", ask=True)[0], reply, time.monotonic())
    gate.set()
    busy.get(30)
    with pytest.raises(taskmesh.AskTimeout):
        reply.get(10)
    assert [d.message for d in system.dead_letters.recent() if d.reason == "expired"] == ["late"]
    assert traces.exporter.get_finished_spans() == ()


class Overlapping(taskmesh.Actor):
    """Three receives at once, each checking its own span across awaits."""

    max_concurrency = 3

    def __init__(self, started: list[int]) -> None:
        self.started = started

    async def receive(self, message: Any) -> Any:
        mine = trace.get_current_span().get_span_context().span_id
        self.started.append(mine)
        while len(self.started) < 3:
            await asyncio.sleep(0.001)
        return trace.get_current_span().get_span_context().span_id == mine


def test_concurrent_async_receives_each_run_in_their_own_span(
    system: ActorSystem, traces: Traces
) -> None:
    started: list[int] = []
    system.spawn(Overlapping, name="many", started=started)
    replies = [Reply() for _ in range(3)]
    for i, reply in enumerate(replies):
        system.deliver_traced("many", traces.message(i, ask=True)[0], reply, None)
    assert [reply.get(10) for reply in replies] == [True, True, True]
    assert sorted(started) == sorted(s.context.span_id for s in traces.spans(3))


class InlineLog(taskmesh.Actor):
    inline = True

    def __init__(self) -> None:
        self.seen: list[Any] = []

    def receive(self, message: Any) -> Any:
        if message == "seen":
            return self.seen
        self.seen.append((message, trace.get_current_span().get_span_context().is_valid))
        return None


def test_an_inline_actor_keeps_the_order_of_traced_and_untraced_messages(
    system: ActorSystem, traces: Traces
) -> None:
    ref = system.spawn(InlineLog, name="log")
    ref.ask("seen")  # started
    for i in range(200):  # as the I/O thread does: one thread delivers in order
        if i % 3 == 0:
            system.deliver_traced("log", traces.message(i)[0], None, None)
        else:
            system.deliver("log", i, None, None)
    seen = wait_until(lambda: (s := ref.ask("seen")) and len(s) == 200 and s, message="all 200")
    assert seen == [(i, i % 3 == 0) for i in range(200)]


class InlineWhere(taskmesh.Actor):
    """Answers with the thread that ran it and the span current there."""

    inline = True

    def receive(self, message: Any) -> Any:
        return threading.get_ident(), trace.get_current_span().get_span_context().span_id


def test_an_idle_inline_actor_runs_a_traced_message_at_once_inside_its_span(
    system: ActorSystem, traces: Traces
) -> None:
    system.spawn(InlineWhere, name="where")
    busy = cast(ThreadCell, system._cells["where"])._busy
    assert busy is not None
    wait_until(lambda: not busy.locked(), message="the actor idle, waiting on its mailbox")
    traced, _ = traces.message("here", ask=True)
    reply = Reply()
    assert system.deliver_traced("where", traced, reply, None) is None
    assert reply.done()  # handled before deliver_traced returned, on this (the I/O) thread
    thread, span_id = reply.get(0)
    assert thread == threading.get_ident()
    [span] = traces.spans(1)
    assert span.name == "process where" and span.context.span_id == span_id
