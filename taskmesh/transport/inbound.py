"""Reading frames: tells and asks from peers, and the answers to our asks.

:class:`Inbound` reads the ROUTER (on the I/O thread, holding
``Router.lock``) and hands each message to ``deliver``, and reads a link's
DEALER (whoever holds ``Link.lock``: the I/O thread or a sync asker),
collecting the answers it finds. Answers are handed to their askers only
after the socket's lock is released (:func:`hand_over`): waking an asker
while holding a socket would make it wait for that socket.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Final

import msgpack
import zmq

from taskmesh.actors.future import Reply, ReplyTo
from taskmesh.errors import AskTimeout, MalformedFrame
from taskmesh.transport.counters import RateLimitedLog, Tally
from taskmesh.transport.envelope import (
    ASK,
    CREDIT,
    FAIL,
    PING,
    PONG,
    REPLY,
    TELL,
    decode_frame,
    encode_envelope,
    encode_failure,
    error_from_failure,
    trace_headers,
)
from taskmesh.transport.router import InboundReply, Router

if TYPE_CHECKING:
    from taskmesh.transport.flow import Inflow
    from taskmesh.transport.link import Link
    from taskmesh.transport.outbox import Outbox
    from taskmesh.transport.traced import Arrivals

__all__ = ["Answered", "Inbound", "hand_over"]

_EVENTS: Final = int(zmq.EVENTS)
_POLLIN: Final = int(zmq.POLLIN)
_POLLOUT: Final = int(zmq.POLLOUT)
_NOBLOCK: Final = int(zmq.NOBLOCK)
_RCVMORE: Final = int(zmq.RCVMORE)
_RCVTIMEO: Final = int(zmq.RCVTIMEO)
_READ_BUDGET: Final = 512  # frames read from a link before looking at others
_ROUTER_BUDGET: Final = 2  # frames read from the router before its answers and credits go out

Answered = list[tuple[Reply, list[Any]]]
"""Answers read but not yet handed to their askers: ``(future, envelope)``."""


def hand_over(answered: Answered) -> None:
    """Give each asker its answer (after the socket's lock is released)."""
    for reply, env in answered:
        if env[0] == REPLY:
            reply.set(env[4])
        else:
            reply.fail(error_from_failure(env[4]))
    answered.clear()


class Inbound:
    """Decodes frames and routes what they carry; see the module doc."""

    def __init__(
        self,
        outbox: Outbox,
        inflow: Inflow,
        *,
        max_message_size: int,
        limited: RateLimitedLog,
    ) -> None:
        self.outbox = outbox
        self.inflow = inflow
        self.max_message_size = max_message_size
        self.limited = limited
        self.pong = encode_envelope(PONG, None, 0, None, None, 1 << 10)
        self.trace: Arrivals | None = None  # tracing on: wraps traced payloads

    def _malformed(self, tally: Tally, why: str) -> None:
        tally.malformed += 1
        self.limited.warning("malformed", "dropped a malformed frame: %s", why)

    def _decode(self, tally: Tally, data: bytes) -> list[Any] | None:
        """Count one received frame and decode it; None if it is malformed."""
        tally.frames_in += 1
        tally.bytes_in += len(data)
        try:
            return decode_frame(data)
        except MalformedFrame as exc:
            self._malformed(tally, str(exc))
            return None

    # --- the router (I/O thread, holding Router.lock) --------------------------

    def read_router(self, router: Router) -> bool:
        """Read what the router holds; True if input is left over (the read
        budget ran out, so other sockets get their turn first)."""
        sock = router.socket
        assert sock is not None
        recv = sock.recv
        option: Callable[[int], int] = sock.getsockopt  # type: ignore[assignment]
        # Poll said readable; ask EVENTS before each further read instead of
        # reading until zmq.Again (a raised exception costs more), and read
        # the parts one by one (recv_multipart's flag enums cost more too).
        for _ in range(_ROUTER_BUDGET):
            try:
                identity = recv(_NOBLOCK)
            except zmq.Again:
                return False
            data = recv(_NOBLOCK)  # a ROUTER message always has a part after the identity
            if option(_RCVMORE):
                extra = 1
                while option(_RCVMORE):
                    recv(_NOBLOCK)
                    extra += 1
                self._malformed(router.tally, f"{extra + 1} data frames in one message")
            else:
                self._frame(router, identity, data)
            if router.queue:
                # Answers (an inline actor's) go out first; whoever sends
                # them looks for more input after the send (Router.has_input).
                return False
            if not option(_EVENTS) & _POLLIN:
                return False
        return True

    def _frame(self, router: Router, identity: bytes, data: bytes) -> None:
        tally = router.tally
        frame = self._decode(tally, data)
        if frame is None:
            return
        if len(data) > self.max_message_size and self._too_long(tally, data, frame):
            return
        tell = self.inflow.tell
        sender = frame[1]
        delivered = 0
        for i in range(2, len(frame)):
            env = frame[i]
            if type(env) is not list or len(env) != 5 or type(env[1]) is not str:
                if type(env) is list and len(env) == 6 and env[0] == ASK:
                    key = env[5]
                    if type(key) is str and type(env[1]) is str:
                        delivered += self._ask(router, identity, sender, env, key)
                        continue
                if type(env) is list and len(env) == 5 and env[0] == PING:
                    router.queue.append((identity, self.pong, 0))
                    continue
                if type(env) is list and len(env) == 7:
                    taken = self._traced(router, identity, sender, env)
                    if taken >= 0:
                        delivered += taken
                        continue
                self._malformed(tally, "bad envelope")
                continue
            kind = env[0]
            if kind == TELL:
                delivered += 1
                tell(router, identity, sender, env[1], env[4])
            elif kind == ASK:
                delivered += self._ask(router, identity, sender, env, None)
            else:
                self._malformed(tally, f"unexpected envelope kind {kind!r} on the inbound socket")
        tally.messages_in += delivered

    def _ask(
        self, router: Router, identity: bytes, sender: str, env: list[Any], key: str | None
    ) -> int:
        """Hand one ask to ``deliver``; returns 1 if it was a valid ask.

        An ask whose remaining time is gone is not delivered: it is a dead
        letter and the asker gets AskTimeout.
        """
        cid = env[2]
        ms = env[3]
        if type(cid) is not int or not (ms is None or type(ms) is int):
            self._malformed(router.tally, "bad ask header")
            return 0
        deadline = None
        if ms is not None:
            if ms <= 0:
                self.outbox.dead_letter(f"{sender}/{env[1]}", env[4], "expired")
                router.queue.append((identity, self._failure(cid, AskTimeout("expired")), 1))
                return 1
            deadline = self.outbox.clock() + ms / 1000.0
        reply: ReplyTo = InboundReply(router, identity, cid)
        self.inflow.ask(router, identity, sender, env[1], env[4], reply, deadline, key)
        return 1

    def _traced(self, router: Router, identity: bytes, sender: str, env: list[Any]) -> int:
        """A tell or ask with trace context: delivered with it (wrapped by
        the tracing hooks) when tracing is on here, without it when off.
        Returns the messages delivered, or -1 if the envelope is malformed."""
        headers = trace_headers(env)
        if headers is None or type(env[1]) is not str:
            return -1
        trace = self.trace
        if env[0] == TELL:
            payload = env[4] if trace is None else trace.received(env[4], headers, sender, False)
            self.inflow.tell(router, identity, sender, env[1], payload)
            return 1
        if trace is not None:
            env[4] = trace.received(env[4], headers, sender, True)
        return self._ask(router, identity, sender, env, env[5])

    def _too_long(self, tally: Tally, data: bytes, frame: list[Any]) -> bool:
        """Drop a frame longer than any honest sender builds: one message
        over the cap (or a batch over it) from a peer with a larger cap."""
        header = 5 + 1 + len(msgpack.packb(frame[1]))
        if len(data) - header <= self.max_message_size:
            return False
        self.outbox.dead_letter(
            str(frame[1]), None, "too_large",
            f"a {len(data)}-byte frame of {len(frame) - 2} messages over the size cap",
        )  # fmt: skip
        self.limited.warning("too_large", "dropped a %d-byte frame over the size cap", len(data))
        return True

    def _failure(self, cid: int, exc: BaseException) -> bytes:
        return encode_failure(cid, exc, self.max_message_size)

    # --- a link (whoever holds Link.lock) -----------------------------------------

    def read_link(self, link: Link, answered: Answered, cid: int = 0, wait_ms: int = 0) -> bool:
        """Read one frame of answers (and pongs) from ``link`` into
        ``answered``; True if it held the answer to ask ``cid``. The caller
        holds ``link.lock`` and knows the socket is readable (or reads in a
        loop until :meth:`service` says it is not), or gives ``wait_ms``:
        then it waits that long for a frame (a sync asker, see ``lead``).
        """
        sock = link.socket
        assert sock is not None
        try:
            if wait_ms:
                # One blocking recv costs three fewer system calls than
                # zmq_poll then recv (each ZeroMQ call looks at the socket's
                # command pipe): measured, 3-4 % of a remote sync ask.
                if link.wait_ms != wait_ms:  # setting an option costs 1-2 us
                    sock.setsockopt(_RCVTIMEO, wait_ms)
                    link.wait_ms = wait_ms
                data = sock.recv(0)
            else:
                data = sock.recv(_NOBLOCK)
        except zmq.Again:
            return False
        tally = link.tally
        frame = self._decode(tally, data)
        if frame is None:
            return False
        link.seen = True
        pending = self.outbox.pending
        found = False
        for i in range(2, len(frame)):
            env = frame[i]
            if type(env) is not list or len(env) != 5:
                self._malformed(tally, "bad envelope")
                continue
            kind = env[0]
            if kind in (REPLY, FAIL):
                if link.unanswered:
                    link.unanswered -= 1
                key = env[2]
                entry = pending.pop(key, None) if type(key) is int else None
                if entry is None:
                    continue  # the asker gave up already
                tally.messages_in += 1
                answered.append((entry[0], env))
                if key == cid:
                    found = True
            elif kind == PONG:
                if link.unanswered:
                    link.unanswered -= 1
            elif kind == CREDIT:
                target, n = env[1], env[2]
                if type(target) is str and type(n) is int and n > 0:
                    link.add_credit(target, n)
                else:
                    self._malformed(tally, "bad credit")
            else:
                self._malformed(tally, f"unexpected envelope kind {kind!r} on a link")
        return found

    def service(self, link: Link, answered: Answered) -> bool:
        """Look at a link's socket: unblock it if it can send, read what came.

        The caller holds ``link.lock``. Whoever used the socket calls this
        before letting go of it while the I/O thread may rely on its fd: a
        send or receive may consume the signal on the fd, which then stays
        quiet. Returns True if input is left over (the read budget ran out).
        """
        sock = link.socket
        assert sock is not None
        events: Callable[[int], int] = sock.getsockopt  # type: ignore[assignment]
        for _ in range(_READ_BUDGET):
            ready = events(_EVENTS)
            if ready & _POLLOUT and link.blocked:
                link.blocked = False
            if not ready & _POLLIN:
                return False
            self.read_link(link, answered)
        return True
