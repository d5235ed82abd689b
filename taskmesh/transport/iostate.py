"""What the parts of the I/O thread share: its state and ZeroMQ constants.

The I/O thread (:class:`~taskmesh.transport.iothread.IOThread`) is built from
three parts, each in its own module: ``inbound`` (frames from peers),
``outbound`` (frames to peers) and ``liveness`` (link states and
heartbeats). Everything here runs on the I/O thread only.
"""

from __future__ import annotations

import logging
from collections import deque
from typing import TYPE_CHECKING, Any, Final

import zmq

if TYPE_CHECKING:
    from taskmesh.actors.future import Reply
    from taskmesh.transport.counters import RateLimitedLog
    from taskmesh.transport.link import Link
    from taskmesh.transport.transport import Transport

__all__ = ["IOState"]

log = logging.getLogger("taskmesh.transport")

_BATCH_BYTES: Final = 256 * 1024  # a frame stops growing past this
_BATCH_COUNT: Final = 4096
_HEADER_SLACK: Final = 4096  # frame header: array head, version, sender address
_READ_BUDGET: Final = 512  # frames read from one socket before looking at others
_COPY_THRESHOLD: Final = 64 * 1024  # zero-copy sends only pay for big frames
_EVENTS: Final = int(zmq.EVENTS)
_POLLIN: Final = int(zmq.POLLIN)  # plain ints: IntFlag arithmetic is slow
_POLLOUT: Final = int(zmq.POLLOUT)
_NOBLOCK: Final = int(zmq.NOBLOCK)
_SNDMORE: Final = int(zmq.SNDMORE)
_RCVMORE: Final = int(zmq.RCVMORE)
_MONITOR_EVENTS: Final = (
    zmq.EVENT_HANDSHAKE_SUCCEEDED
    | zmq.EVENT_DISCONNECTED
    | zmq.EVENT_CONNECT_RETRIED
    | zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL
    | zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL
    | zmq.EVENT_HANDSHAKE_FAILED_AUTH
)


class IOState:
    """The I/O thread's state, declared once for its parts."""

    t: Transport
    router: zmq.Socket[bytes] | None
    poller: zmq.Poller
    links: list[Link]
    by_monitor: dict[zmq.Socket[bytes], Link]
    prefix: bytes
    ping: bytes
    pong: bytes
    limited: RateLimitedLog
    answered: list[tuple[Reply, list[Any]]]
    reply_backlog: dict[bytes, deque[tuple[bytes, int]]]
    batch_bytes: int
    max_frame: int

    def _fail_queued(self, link: Link) -> None:  # pragma: no cover - see Outbound
        raise NotImplementedError

    def _service(  # pragma: no cover - see Inbound
        self, link: Link, answered: list[tuple[Reply, list[Any]]]
    ) -> None:
        raise NotImplementedError
