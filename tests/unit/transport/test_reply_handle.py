"""The reply handle that carries an actor's answer back to a remote asker."""

from __future__ import annotations

from collections import deque
from typing import Any

from taskmesh.errors import MailboxFull, RemoteError
from taskmesh.transport.envelope import (
    FAIL,
    REPLY,
    decode_frame,
    error_from_failure,
    frame_prefix,
    join_frame,
)
from taskmesh.transport.inbound import InboundReply


class FakeTransport:
    """What the handle needs from a transport: the reply queue and a waker."""

    def __init__(self) -> None:
        self.max_message_size = 1000
        self._replies: deque[tuple[bytes, bytes]] = deque()
        self._wake_pending = False
        self.wakes = 0

    def _wake(self) -> None:
        if not self._wake_pending:
            self._wake_pending = True
            self.wakes += 1


def envelope(data: bytes) -> list[Any]:
    return decode_frame(join_frame(frame_prefix("s"), [data]))[2]  # type: ignore[no-any-return]


def test_set_queues_one_encoded_reply_and_wakes_once() -> None:
    fake = FakeTransport()
    InboundReply(fake, b"peer", 5).set({"ok": 1})  # type: ignore[arg-type]
    InboundReply(fake, b"peer", 6).set(2)  # type: ignore[arg-type]
    assert fake.wakes == 1
    assert [(i, envelope(d)) for i, d in fake._replies] == [
        (b"peer", [REPLY, None, 5, None, {"ok": 1}]),
        (b"peer", [REPLY, None, 6, None, 2]),
    ]


def test_only_the_first_answer_counts() -> None:
    fake = FakeTransport()
    handle = InboundReply(fake, b"peer", 5)  # type: ignore[arg-type]
    handle.fail(MailboxFull("full"))
    handle.set("late")
    assert len(fake._replies) == 1
    kind, _, cid, _, body = envelope(fake._replies[0][1])
    assert (kind, cid) == (FAIL, 5)
    assert isinstance(error_from_failure(body), MailboxFull)


def test_an_unencodable_or_oversized_answer_becomes_an_error_reply() -> None:
    fake = FakeTransport()
    InboundReply(fake, b"peer", 1).set({1, 2})  # type: ignore[arg-type]
    InboundReply(fake, b"peer", 2).set(b"x" * 2000)  # type: ignore[arg-type]
    errors = [error_from_failure(envelope(d)[4]) for _, d in fake._replies]
    assert [type(e) for e in errors] == [RemoteError, RemoteError]
    assert [e.type_name for e in errors if isinstance(e, RemoteError)] == [
        "InvalidMessage",
        "MessageTooLarge",
    ]
