"""The reply handle and the router: how an actor's answer goes back to a
remote asker."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from typing import Any

import pytest
import zmq

from taskmesh.actors.deadletters import DeadLetters
from taskmesh.errors import MailboxFull, RemoteError
from taskmesh.ops.latency import LatencyHistogram
from taskmesh.transport.counters import RateLimitedLog
from taskmesh.transport.envelope import (
    FAIL,
    REPLY,
    decode_frame,
    error_from_failure,
    frame_prefix,
)
from taskmesh.transport.outbox import Outbox
from taskmesh.transport.router import InboundReply, Router


class FakeRouter:
    """What the handle needs from a router: where answers go, and the cap."""

    max_message_size = 1000

    def __init__(self) -> None:
        self.sent: list[tuple[bytes, bytes]] = []
        self.handling = LatencyHistogram()

    def reply(self, identity: bytes, data: bytes) -> None:
        self.sent.append((identity, data))


def envelope(data: bytes) -> list[Any]:
    from taskmesh.transport.envelope import join_frame

    return decode_frame(join_frame(frame_prefix("s"), [data]))[2]  # type: ignore[no-any-return]


def test_set_encodes_one_answer_for_the_asker_and_times_its_handling() -> None:
    fake = FakeRouter()
    InboundReply(fake, b"peer", 5).set({"ok": 1})  # type: ignore[arg-type]
    InboundReply(fake, b"peer", 6).set(2)  # type: ignore[arg-type]
    assert [(i, envelope(d)) for i, d in fake.sent] == [
        (b"peer", [REPLY, None, 5, None, {"ok": 1}]),
        (b"peer", [REPLY, None, 6, None, 2]),
    ]
    assert fake.handling.cumulative()[-1] == ("+Inf", 2)


def test_only_the_first_answer_counts() -> None:
    fake = FakeRouter()
    handle = InboundReply(fake, b"peer", 5)  # type: ignore[arg-type]
    handle.fail(MailboxFull("full"))
    handle.set("late")
    assert len(fake.sent) == 1
    kind, _, cid, _, body = envelope(fake.sent[0][1])
    assert (kind, cid) == (FAIL, 5)
    assert isinstance(error_from_failure(body), MailboxFull)


def test_an_unencodable_or_oversized_answer_becomes_an_error_reply() -> None:
    fake = FakeRouter()
    InboundReply(fake, b"peer", 1).set({1, 2})  # type: ignore[arg-type]
    InboundReply(fake, b"peer", 2).set(b"x" * 2000)  # type: ignore[arg-type]
    errors = [error_from_failure(envelope(d)[4]) for _, d in fake.sent]
    assert [type(e) for e in errors] == [RemoteError, RemoteError]
    assert [e.type_name for e in errors if isinstance(e, RemoteError)] == [
        "InvalidMessage",
        "MessageTooLarge",
    ]


@pytest.fixture
def pair() -> Iterator[tuple[Router, zmq.Socket[bytes], Outbox]]:
    context: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
    server = context.socket(zmq.ROUTER)
    server.setsockopt(zmq.ROUTER_MANDATORY, 1)
    server.bind("inproc://router-test")
    asker = context.socket(zmq.DEALER)
    asker.setsockopt(zmq.IDENTITY, b"asker")
    asker.connect("inproc://router-test")
    outbox = Outbox(
        max_queue=10, send_timeout=1.0, clock=time.monotonic, dead_letters=DeadLetters()
    )
    router = Router(
        outbox, server, frame_prefix("server"), max_message_size=1000, batch_bytes=1000,
        limited=RateLimitedLog(logging.getLogger("taskmesh.test")),
    )  # fmt: skip
    try:
        yield router, asker, outbox
    finally:
        asker.close(0)
        router.close(0)
        context.term()


def answers(asker: zmq.Socket[bytes]) -> list[Any]:
    assert asker.poll(5000), "no answer arrived"
    return [env[4] for env in decode_frame(asker.recv())[2:]]


def test_an_answer_goes_straight_out_when_the_router_is_free(
    pair: tuple[Router, zmq.Socket[bytes], Outbox],
) -> None:
    router, asker, outbox = pair
    InboundReply(router, b"asker", 1).set("direct")
    assert router.queue == type(router.queue)()  # nothing left for the I/O thread
    assert outbox.wake_pending is False  # and the I/O thread was not woken
    assert answers(asker) == ["direct"]
    assert router.tally.messages_out == 1


def test_while_the_router_is_held_answers_queue_in_order_and_leave_as_one_frame(
    pair: tuple[Router, zmq.Socket[bytes], Outbox],
) -> None:
    router, asker, outbox = pair
    with router.lock:  # the I/O thread reading the router
        InboundReply(router, b"asker", 1).set("first")
        InboundReply(router, b"asker", 2).set("second")
        assert len(router.queue) == 2 and outbox.wake_pending
    with router.lock:
        router.send_queued()
    assert answers(asker) == ["first", "second"]


def test_an_answer_to_a_vanished_asker_is_a_dead_letter(
    pair: tuple[Router, zmq.Socket[bytes], Outbox],
) -> None:
    router, _, outbox = pair
    InboundReply(router, b"nobody", 1).set({"lost": True})
    letters = outbox.dead_letters.recent()  # type: ignore[attr-defined]
    assert [(d.reason, d.message) for d in letters] == [("reply_undeliverable", {"lost": True})]
