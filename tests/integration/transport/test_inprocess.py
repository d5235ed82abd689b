"""Deadlines, timeouts and backpressure, with both transports in this process."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from taskmesh.actors.deadletters import DeadLetters
from taskmesh.actors.future import ReplyTo
from taskmesh.errors import ActorError, AskTimeout, TransportError
from taskmesh.transport import Transport
from tests.integration.transport.conftest import Peers
from tests.integration.transport.local import local_transport
from tests.waiting import wait_until

pytestmark = pytest.mark.integration


class Recorder:
    """A deliver function that keeps what it is given and never answers."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, Any, ReplyTo | None, float | None]] = []
        self.keys: list[str | None] = []
        self.thread_names: set[str] = set()

    def __call__(
        self,
        target: str,
        message: Any,
        reply: ReplyTo | None,
        deadline: float | None,
        idempotency_key: str | None = None,
    ) -> None:
        self.thread_names.add(threading.current_thread().name)
        self.calls.append((target, message, reply, deadline))
        self.keys.append(idempotency_key)


@pytest.fixture
def pair() -> Iterator[tuple[Transport, Transport, Recorder]]:
    recorder = Recorder()
    server = Transport(deliver=recorder)
    server.start()
    client = local_transport(listen=None)
    yield server, client, recorder
    client.stop()
    server.stop()


def test_the_receiver_gets_a_local_deadline_from_the_remaining_time(
    pair: tuple[Transport, Transport, Recorder],
) -> None:
    server, client, recorder = pair
    client.ref(server.address, "a").ask_async("x", timeout=5.0)
    wait_until(lambda: recorder.calls, message="delivery")
    target, message, reply, deadline = recorder.calls[0]
    assert (target, message) == ("a", "x")
    assert reply is not None and deadline is not None
    assert 3.0 < deadline - time.monotonic() <= 5.0
    assert recorder.thread_names == {"taskmesh-transport-io"}


def test_an_idempotency_key_travels_with_the_ask(
    pair: tuple[Transport, Transport, Recorder],
) -> None:
    server, client, recorder = pair
    ref = client.ref(server.address, "a")
    ref.ask_async("plain", timeout=5)
    ref.ask_async("keyed", timeout=5, idempotency_key="order-42")
    ref.tell("told")
    wait_until(lambda: len(recorder.calls) == 3, message="three deliveries")
    assert recorder.keys == [None, "order-42", None]
    assert [c[1] for c in recorder.calls] == ["plain", "keyed", "told"]


def test_heartbeats_are_not_counted_as_messages(
    pair: tuple[Transport, Transport, Recorder],
) -> None:
    server, client, _recorder = pair
    client.ref(server.address, "a").tell("one")
    wait_until(lambda: client.snapshot()["frames_out"] >= 4, message="a few heartbeats")
    assert client.snapshot()["messages_out"] == 1
    assert server.snapshot()["messages_in"] == 1
    assert server.snapshot()["messages_out"] == 0


def test_an_ask_that_expired_in_transit_is_not_executed(
    pair: tuple[Transport, Transport, Recorder],
) -> None:
    server, client, recorder = pair
    ref = client.ref(server.address, "a")
    with pytest.raises(AskTimeout):
        ref.ask("too late", timeout=0.0001)  # 0 ms left when it arrives
    wait_until(lambda: server.snapshot()["dead_letters"], message="the expired ask counted")
    assert server.snapshot()["dead_letters"] == {"expired": 1}
    ref.tell("after")
    wait_until(lambda: recorder.calls, message="the tell")
    assert [c[1] for c in recorder.calls] == ["after"]


def test_an_unanswered_ask_times_out_and_is_forgotten(
    pair: tuple[Transport, Transport, Recorder],
) -> None:
    server, client, _recorder = pair
    start = time.monotonic()
    with pytest.raises(AskTimeout):
        client.ref(server.address, "a").ask("hello?", timeout=0.5)
    assert 0.4 < time.monotonic() - start < 5
    assert client.snapshot()["asks_pending"] == 0
    reply = client.ref(server.address, "a").ask_async("async", timeout=0.3)
    with pytest.raises(AskTimeout):
        reply.get(timeout=10)  # failed by the transport once its timeout passed
    assert client.snapshot()["asks_pending"] == 0


def test_a_late_answer_after_the_timeout_is_dropped_quietly(
    pair: tuple[Transport, Transport, Recorder],
) -> None:
    server, client, recorder = pair
    with pytest.raises(AskTimeout):
        client.ref(server.address, "a").ask("slow", timeout=0.2)
    reply = recorder.calls[0][2]
    assert reply is not None
    reply.set("finally")
    assert client.ref(server.address, "b").ask_async("next", timeout=5) is not None
    wait_until(lambda: len(recorder.calls) == 2, message="the next ask")
    assert client.snapshot()["dead_letters"] == {}


def test_stop_fails_pending_asks_and_dead_letters_queued_tells(peers: Peers) -> None:
    letters = DeadLetters()
    peer = peers.start()
    client = local_transport(listen=None, dead_letters=letters)
    echo = client.ref(peer.address, "echo")
    assert echo.ask("up", timeout=10) == "up"
    peer.pause()
    reply = echo.ask_async("pending", timeout=60)
    client.stop()
    with pytest.raises(Exception, match="stopped"):
        reply.get(timeout=10)
    echo.tell("after stop")
    last = letters.recent()[-1]
    assert (last.recipient, last.message, last.reason) == (
        f"{peer.address}/echo",
        "after stop",
        "peer_unreachable",
    )


def test_a_receiver_that_stops_reading_pushes_back_on_the_sender(peers: Peers) -> None:
    letters = DeadLetters()
    peer = peers.start()
    client = local_transport(
        listen=None, max_queue=50, send_timeout=0.2, high_water_mark=5, dead_letters=letters
    )
    try:
        seq = client.ref(peer.address, "seq")
        assert seq.ask("get", timeout=10) == []
        peer.pause()
        chunk = b"x" * 60_000
        start = time.monotonic()
        sent = 0
        while not letters.total:
            seq.tell(chunk)
            sent += 1
            assert sent < 10_000, "no backpressure after 600 MB"
        assert time.monotonic() - start >= 0.2  # the last tell waited for room
        assert letters.recent()[0].reason == "queue_full"
        assert client.snapshot()["dead_letters"] == {"queue_full": 1}
    finally:
        peer.resume()
        client.stop()


def test_listening_on_a_taken_port_fails_at_start(
    pair: tuple[Transport, Transport, Recorder],
) -> None:
    server, _client, _recorder = pair
    clash = Transport(listen=server.address)
    with pytest.raises(TransportError, match="cannot listen"):
        clash.start()


def test_a_sync_ask_made_on_the_io_thread_raises_and_sends_nothing() -> None:
    # What an inline actor that asks synchronously would do: refused at once.
    errors: list[BaseException] = []
    nested = Recorder()
    other = Transport(deliver=nested)
    other.start()

    def deliver(target: str, message: Any, reply: ReplyTo | None, *rest: Any) -> None:
        try:
            server.ref(other.address, "x").ask("nested", timeout=5.0)
        except BaseException as exc:  # recorded for the assertion below
            errors.append(exc)
        if reply is not None:
            reply.set("done")

    server = Transport(deliver=deliver)
    server.start()
    client = local_transport(listen=None)
    try:
        assert client.ref(server.address, "a").ask("go", timeout=10.0) == "done"
        assert len(errors) == 1 and isinstance(errors[0], ActorError)
        assert "I/O thread" in str(errors[0])
        assert server.snapshot()["asks_pending"] == 0
        assert nested.calls == []
    finally:
        client.stop()
        server.stop()
        other.stop()


def test_credit_for_entity_targets_is_counted_per_type_so_its_tables_stay_small(
    pair: tuple[Transport, Transport, Recorder],
) -> None:
    """Entity ids are unbounded over a node's life: tells to 5,000 ids of one
    type (more than a credit window) all arrive, and the flow-control tables
    on both sides hold one entry for the type, not one per id."""
    server, client, recorder = pair
    ids = [f"~device/1/dock-{i}" for i in range(5_000)]
    for target in ids:
        client.ref(server.address, target).tell("ping")
    wait_until(lambda: len(recorder.calls) == len(ids), timeout=30, message="every tell")
    assert [call[0] for call in recorder.calls] == ids
    link = client._outbox.links[server.address]
    assert set(link.tickets) == {"~device"}
    wait_until(lambda: set(link.granted) == {"~device"}, timeout=30, message="credit back")
    owed = server._io.inflow.owed
    wait_until(lambda: all(not o for o in owed.values()), timeout=30, message="all granted")
