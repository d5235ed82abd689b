"""Frames from peers: asks and tells for local actors, replies to our asks.

Runs on the I/O thread, except :class:`InboundReply`'s methods, which run
on the answering actor's thread.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import msgpack
import zmq

from taskmesh.actors.future import Reply, ReplyTo
from taskmesh.errors import ActorNotFound, AskTimeout, MailboxFull, MalformedFrame
from taskmesh.transport.envelope import (
    ASK,
    FAIL,
    PING,
    PONG,
    REPLY,
    TELL,
    decode_frame,
    encode_envelope,
    encode_failure,
    error_from_failure,
)
from taskmesh.transport.iostate import (
    _EVENTS,
    _NOBLOCK,
    _POLLIN,
    _POLLOUT,
    _RCVMORE,
    _READ_BUDGET,
    IOState,
)

if TYPE_CHECKING:
    from taskmesh.transport.link import Link
    from taskmesh.transport.transport import Transport

__all__ = ["Inbound", "InboundReply"]


class InboundReply:
    """The reply handle given with a remote ask to ``deliver``.

    ``set``/``fail`` run on the answering actor's thread: they encode the
    answer there (keeping that work off the I/O thread) and queue it for
    the I/O thread, waking it only if no wake-up is pending.
    """

    __slots__ = ("_cid", "_done", "_identity", "_transport")

    def __init__(self, transport: Transport, identity: bytes, cid: int) -> None:
        self._transport = transport
        self._identity = identity
        self._cid = cid
        self._done = False

    def set(self, value: Any) -> None:
        if self._done:
            return
        self._done = True
        t = self._transport
        try:
            data = encode_envelope(REPLY, None, self._cid, None, value, t.max_message_size)
        except Exception as exc:  # InvalidMessage, MessageTooLarge
            data = encode_failure(self._cid, exc, t.max_message_size)
        t._replies.append((self._identity, data))
        if not t._wake_pending:
            t._wake()

    def fail(self, exc: BaseException) -> None:
        if self._done:
            return
        self._done = True
        t = self._transport
        t._replies.append((self._identity, encode_failure(self._cid, exc, t.max_message_size)))
        if not t._wake_pending:
            t._wake()


class Inbound(IOState):
    """Reading the ROUTER (from peers) and the DEALERs (replies to us)."""

    def _malformed(self, why: str) -> None:
        self.t.counters.malformed_frames += 1
        self.limited.warning("malformed", "dropped a malformed frame: %s", why)

    def _read_router(self) -> None:
        assert self.router is not None
        router = self.router
        recv = router.recv
        option: Callable[[int], int] = router.getsockopt  # type: ignore[assignment]
        # Poll said readable; ask EVENTS before each further read instead of
        # reading until zmq.Again (a raised exception costs more), and read
        # the parts one by one (recv_multipart's flag enums cost more too).
        for _ in range(_READ_BUDGET):
            try:
                identity = recv(_NOBLOCK)
            except zmq.Again:
                return
            data = recv(_NOBLOCK)  # a ROUTER message always has a part after the identity
            if option(_RCVMORE):
                extra = 1
                while option(_RCVMORE):
                    recv(_NOBLOCK)
                    extra += 1
                self._malformed(f"{extra + 1} data frames in one message")
            else:
                self._inbound(identity, data)
            if not option(_EVENTS) & _POLLIN:
                return

    def _decode(self, data: bytes) -> list[Any] | None:
        """Count one received frame and decode it; None if it is malformed."""
        counters = self.t.counters
        counters.frames_in += 1
        counters.bytes_in += len(data)
        try:
            return decode_frame(data)
        except MalformedFrame as exc:
            self._malformed(str(exc))
            return None

    def _inbound(self, identity: bytes, data: bytes) -> None:
        t = self.t
        counters = t.counters
        frame = self._decode(data)
        if frame is None:
            return
        if len(data) > t.max_message_size and self._too_long(data, frame):
            return
        deliver = t._deliver
        replies = t._replies
        delivered = 0
        for i in range(2, len(frame)):
            env = frame[i]
            if type(env) is not list or len(env) != 5 or type(env[1]) is not str:
                if type(env) is list and len(env) == 6 and env[0] == ASK:
                    key = env[5]
                    if type(key) is str and type(env[1]) is str:
                        delivered += self._ask(identity, frame[1], env, key)
                        continue
                if type(env) is list and len(env) == 5 and env[0] == PING:
                    replies.append((identity, self.pong))
                    t.counters.messages_out -= 1  # a heartbeat: counted back when sent
                    continue
                self._malformed("bad envelope")
                continue
            kind = env[0]
            if kind == TELL:
                delivered += 1
                try:
                    deliver(env[1], env[4], None, None)
                except Exception as exc:
                    t.dead_letter(frame[1], env[1], env[4], "deliver_failed")
                    self.limited.warning("deliver", "deliver failed for a tell: %r", exc)
            elif kind == ASK:
                delivered += self._ask(identity, frame[1], env, None)
            else:
                self._malformed(f"unexpected envelope kind {kind!r} on the inbound socket")
        counters.messages_in += delivered

    def _ask(self, identity: bytes, sender: str, env: list[Any], key: str | None) -> int:
        """Hand one ask to ``deliver``; returns 1 if it was a valid ask.

        An ask whose remaining time is gone is not delivered: it is a dead
        letter and the asker gets AskTimeout.
        """
        t = self.t
        cid = env[2]
        ms = env[3]
        if type(cid) is not int or not (ms is None or type(ms) is int):
            self._malformed("bad ask header")
            return 0
        deadline = None
        if ms is not None:
            if ms <= 0:
                t.dead_letter(sender, env[1], env[4], "expired")
                t._replies.append((identity, self._failure(cid, AskTimeout("expired"))))
                return 1
            deadline = t.clock() + ms / 1000.0
        reply: ReplyTo = InboundReply(t, identity, cid)
        try:
            if key is None:
                t._deliver(env[1], env[4], reply, deadline)
            else:
                t._deliver(env[1], env[4], reply, deadline, key)
        except (ActorNotFound, MailboxFull) as exc:
            t._replies.append((identity, self._failure(cid, exc)))
        except Exception as exc:
            self.limited.warning("deliver", "deliver failed for an ask: %r", exc)
            t._replies.append((identity, self._failure(cid, exc)))
        return 1

    def _too_long(self, data: bytes, frame: list[Any]) -> bool:
        """Drop a frame longer than any honest sender builds: one message
        over the cap (or a batch over it) from a peer with a larger cap."""
        header = 5 + 1 + len(msgpack.packb(frame[1]))
        if len(data) - header <= self.t.max_message_size:
            return False
        self.t.counters.dead_letter("too_large", len(frame) - 2)
        self.limited.warning("too_large", "dropped a %d-byte frame over the size cap", len(data))
        return True

    def _failure(self, cid: int, exc: BaseException) -> bytes:
        return encode_failure(cid, exc, self.t.max_message_size)

    def _service(self, link: Link, answered: list[tuple[Reply, list[Any]]]) -> None:
        """Look at a link's socket: unblock it if it can send, read what came.

        The caller holds ``link.lock``; any thread. Whoever used the socket
        calls this before letting go of it: a send or receive may consume the
        signal on the socket's fd, and the fd would then stay quiet.
        """
        sock = link.socket
        assert sock is not None
        events: Callable[[int], int] = sock.getsockopt  # type: ignore[assignment]
        ready = events(_EVENTS)
        if ready & _POLLOUT and link.blocked:
            link.blocked = False
        if ready & _POLLIN:
            self._read_link(link, answered)

    def _read_link(self, link: Link, answered: list[tuple[Reply, list[Any]]]) -> None:
        """Read replies (and pongs) from a link into ``answered``; the caller
        holds ``link.lock``. Reads until the socket has nothing more."""
        sock = link.socket
        assert sock is not None
        t = self.t
        counters = t.counters
        pending = t._pending
        events: Callable[[int], int] = sock.getsockopt  # type: ignore[assignment]
        for _ in range(_READ_BUDGET):
            try:
                data = sock.recv(_NOBLOCK)
            except zmq.Again:
                return
            frame = self._decode(data)
            if frame is None:
                continue
            link.seen = True
            for i in range(2, len(frame)):
                env = frame[i]
                if type(env) is not list or len(env) != 5:
                    self._malformed("bad envelope")
                    continue
                kind = env[0]
                if kind in (REPLY, FAIL):
                    cid = env[2]
                    entry = pending.pop(cid, None) if type(cid) is int else None
                    if entry is None:
                        continue  # the asker gave up already
                    counters.messages_in += 1
                    answered.append((entry[0], env))
                elif kind != PONG:
                    self._malformed(f"unexpected envelope kind {kind!r} on a link")
            if not events(_EVENTS) & _POLLIN:
                return
        link.parked = True  # more to read: the I/O thread looks again at its next turn

    @staticmethod
    def _answer(answered: list[tuple[Reply, list[Any]]]) -> None:
        for reply, env in answered:
            if env[0] == REPLY:
                reply.set(env[4])
            else:
                reply.fail(error_from_failure(env[4]))
        answered.clear()
