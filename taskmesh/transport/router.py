"""The bound ROUTER socket: messages from peers come in, answers go out.

The socket belongs to whoever holds ``Router.lock``. The I/O thread takes
it to read and to send the answers queued for it. An actor's thread that
answers a remote ask takes it for a moment to send its answer itself
(:meth:`Router.reply`): that spares the I/O thread a wake-up, a thread
hand-off that costs 20-25 us on the machines measured. The I/O thread polls
the socket's file descriptor, never the socket, so it does not use the
socket without the lock.
"""

from __future__ import annotations

import time
from _thread import allocate_lock
from collections import deque
from typing import TYPE_CHECKING, Any, Final

import zmq

from taskmesh.ops.latency import LatencyHistogram
from taskmesh.transport.counters import RateLimitedLog, Tally
from taskmesh.transport.envelope import (
    REPLY,
    decode_frame,
    encode_envelope,
    encode_failure,
    join_frame,
)

if TYPE_CHECKING:
    from taskmesh.transport.outbox import Outbox

__all__ = ["InboundReply", "Router"]

_perf_counter = time.perf_counter
_EVENTS: Final = int(zmq.EVENTS)
_POLLIN: Final = int(zmq.POLLIN)
_NOBLOCK: Final = int(zmq.NOBLOCK)
_SNDMORE: Final = int(zmq.SNDMORE)
_zmq_send = zmq.backend.Socket.send
"""``Socket.send`` without pyzmq's Python wrapper (routing ids and groups,
which we never use): 0.4 us less per call, two calls per answer."""


def _events(sock: zmq.Socket[bytes]) -> int:
    return sock.getsockopt(_EVENTS)  # type: ignore[return-value]


Queued = tuple[bytes, bytes, int]
"""``(asker identity, encoded envelope, messages counted)``: 0 for a pong."""


class Router:
    """The inbound socket and the answers waiting to be sent on it.

    ``queue`` is appended by any thread and drained by the I/O thread;
    ``backlog`` (answers an asker's connection could not take yet, per
    asker, in order) and ``tally`` are used under ``lock`` only.
    """

    def __init__(
        self,
        outbox: Outbox,
        socket: zmq.Socket[bytes],
        prefix: bytes,
        *,
        max_message_size: int,
        batch_bytes: int,
        limited: RateLimitedLog,
    ) -> None:
        self.outbox = outbox
        self.socket: zmq.Socket[bytes] | None = socket
        fd = socket.getsockopt(zmq.FD)
        assert isinstance(fd, int)
        self.fd = fd
        self.lock = allocate_lock()
        self.prefix = prefix
        self.max_message_size = max_message_size
        self.batch_bytes = batch_bytes
        self.limited = limited
        self.queue: deque[Queued] = deque()
        self.backlog: dict[bytes, deque[tuple[bytes, int]]] = {}
        self.unread = False  # a replier's send left input unread: the I/O thread reads
        self.tally = Tally()
        self.handling = LatencyHistogram()  # remote asks: arrival to answer (any thread)

    # --- any thread ------------------------------------------------------------

    def reply(self, identity: bytes, data: bytes) -> None:
        """Send one encoded answer to the asker ``identity`` (any thread).

        Directly when the socket is free and no earlier answer waits; else
        queued for the I/O thread. On the I/O thread itself (an inline actor
        answering while the router is read) the lock is held, so answers are
        queued there and leave as one frame per asker.
        """
        lock = self.lock
        if not self.queue and not self.backlog and lock.acquire(False):
            try:
                sock = self.socket
                if sock is not None and not self.backlog:
                    frame = join_frame(self.prefix, (data,))
                    if not self._send(identity, frame, 1):
                        self.backlog[identity] = deque(((frame, 1),))
                        self.outbox.wake()
                    elif self.has_input():
                        # Our send may have consumed the fd's signal for input
                        # that came meanwhile: the I/O thread must read it.
                        self.unread = True
                        self.outbox.wake()
                    return
            finally:
                lock.release()
        self.queue.append((identity, data, 1))
        self.outbox.wake()

    # --- whoever holds the lock ------------------------------------------------

    def has_input(self) -> bool:
        """Whether a message waits to be read. Whoever used the socket asks
        before letting go of it: ZeroMQ signals the fd the I/O thread polls
        only when a pipe with nothing to read gets input, and any use of the
        socket may consume that signal."""
        sock = self.socket
        return sock is not None and bool(_events(sock) & _POLLIN)

    def _send(self, identity: bytes, frame: bytes, count: int) -> bool:
        """Send one frame; False if the asker's connection cannot take it now."""
        sock = self.socket
        assert sock is not None
        try:
            _zmq_send(sock, identity, _NOBLOCK | _SNDMORE)
            _zmq_send(sock, frame, _NOBLOCK)
        except zmq.Again:
            return False
        except zmq.ZMQError as exc:  # ROUTER_MANDATORY: the asker is gone
            self._undeliverable(identity, frame, "reply_undeliverable", str(exc))
            return True
        tally = self.tally
        tally.frames_out += 1
        tally.messages_out += count
        tally.bytes_out += len(frame)
        return True

    def _undeliverable(self, identity: bytes, frame: bytes, reason: str, error: str) -> None:
        self.limited.warning(reason, "could not send answers to %s: %s", identity.hex(), error)
        try:
            envelopes = decode_frame(frame)[2:]
        except Exception:
            return
        for env in envelopes:
            if type(env) is list and len(env) == 5 and env[0] == REPLY:
                self.outbox.dead_letter(f"answer to {identity.hex()}", env[4], reason, error)

    def send_queued(self) -> None:
        """Send the queued answers, one frame per asker and batch (I/O
        thread, holding the lock). An answer the asker's connection cannot
        take waits in the asker's backlog, in order."""
        queue = self.queue
        backlog = self.backlog
        if len(queue) == 1 and not backlog:  # the common case: skip the grouping
            identity, data, count = queue.popleft()
            frame = join_frame(self.prefix, (data,))
            if not self._send(identity, frame, count):
                backlog[identity] = deque(((frame, count),))
            return
        groups: dict[bytes, list[tuple[bytes, int]]] = {}
        for _ in range(len(queue)):
            identity, data, count = queue.popleft()
            group = groups.get(identity)
            if group is None:
                groups[identity] = [(data, count)]
            else:
                group.append((data, count))
        for identity, group in groups.items():
            for frame, count in self._frames(group):
                waiting = backlog.get(identity)
                if waiting is not None:
                    waiting.append((frame, count))
                elif not self._send(identity, frame, count):
                    backlog[identity] = deque(((frame, count),))

    def _frames(self, group: list[tuple[bytes, int]]) -> list[tuple[bytes, int]]:
        frames = []
        start = 0
        while start < len(group):
            end, size, count = start, 0, 0
            while end < len(group) and (
                end == start or size + len(group[end][0]) <= self.batch_bytes
            ):
                size += len(group[end][0])
                count += group[end][1]
                end += 1
            frames.append((join_frame(self.prefix, [d for d, _ in group[start:end]]), count))
            start = end
        return frames

    def retry_backlog(self, max_queue: int) -> None:
        """Retry answers waiting for their asker (I/O thread, holding the
        lock, every millisecond while any waits). An asker that reads none
        while ``max_queue`` frames wait loses the oldest: dead letters."""
        backlog = self.backlog
        for identity in list(backlog):
            waiting = backlog[identity]
            while waiting and self._send(identity, *waiting[0]):
                waiting.popleft()
            if not waiting:
                del backlog[identity]
            elif len(waiting) > max_queue:
                frame, _ = waiting.popleft()
                self._undeliverable(
                    identity, frame, "reply_queue_full", "the asker reads no answers"
                )

    def close(self, linger_ms: int) -> None:
        """Close the socket (I/O thread, at the end): answers sent just now
        get ``linger_ms`` to reach the wire."""
        with self.lock:
            sock, self.socket = self.socket, None
        if sock is not None:
            sock.close(linger_ms)


class InboundReply:
    """The reply handle given with a remote ask to ``deliver``.

    ``set``/``fail`` run on the answering actor's thread (or the I/O thread
    for an inline actor): they encode the answer there, keeping that work
    off the I/O thread, and hand it to :meth:`Router.reply`. The time from
    the ask's arrival to its answer goes into ``Router.handling``.
    """

    __slots__ = ("_at", "_cid", "_done", "_identity", "_router")

    def __init__(self, router: Router, identity: bytes, cid: int) -> None:
        self._router = router
        self._identity = identity
        self._cid = cid
        self._done = False
        self._at = _perf_counter()

    def set(self, value: Any) -> None:
        if self._done:
            return
        self._done = True
        router = self._router
        router.handling.observe(_perf_counter() - self._at)
        try:
            data = encode_envelope(REPLY, None, self._cid, None, value, router.max_message_size)
        except Exception as exc:  # InvalidMessage, MessageTooLarge
            data = encode_failure(self._cid, exc, router.max_message_size)
        router.reply(self._identity, data)

    def fail(self, exc: BaseException) -> None:
        if self._done:
            return
        self._done = True
        router = self._router
        router.handling.observe(_perf_counter() - self._at)
        router.reply(self._identity, encode_failure(self._cid, exc, router.max_message_size))
