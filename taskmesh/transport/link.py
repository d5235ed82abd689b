"""The outbound link to one peer: its queue, its socket and its state.

A link's DEALER socket belongs to whoever holds ``Link.lock``: the I/O
thread, or for a moment a thread doing a sync ask, which sends its ask and
reads its answer itself (see :mod:`taskmesh.transport.lead`). Fields are
grouped below by who may touch them.
"""

from __future__ import annotations

import threading
from _thread import allocate_lock
from collections import deque
from typing import TYPE_CHECKING, Final

from taskmesh.transport.counters import Tally

if TYPE_CHECKING:
    import zmq

__all__ = ["CONNECTING", "DOWN", "UP", "Link"]

CONNECTING: Final = "connecting"
UP: Final = "up"
DOWN: Final = "down"


class Link:
    """State of the outbound connection to the peer at ``address``.

    ``state`` moves ``connecting -> up <-> down`` on the socket monitor's
    events (handshake succeeded, disconnected, connection refused,
    authentication failed). While ``down``, sends fail at once.
    """

    __slots__ = (
        "address",
        "blocked",
        "carry",
        "carry_count",
        "fd",
        "last_seen",
        "lock",
        "monitor",
        "polled",
        "queue",
        "reason",
        "scheduled",
        "seen",
        "server_key",
        "socket",
        "space",
        "state",
        "suspect",
        "tally",
        "unanswered",
    )

    def __init__(self, address: str, server_key: bytes | None) -> None:
        self.address = address
        self.server_key = server_key
        # Any thread: senders append encoded envelopes (deque append/popleft
        # are atomic) and read ``state``; the I/O thread writes ``state``.
        self.queue: deque[bytes] = deque()
        self.state: str = CONNECTING
        self.reason = ""
        self.scheduled = False  # in the outbox's ready deque (see Outbox.enqueue)
        # Set by whoever drains the queue; a sender that found it full waits on it.
        self.space = threading.Event()
        self.lock = allocate_lock()  # held by whoever uses ``socket``
        # Whoever holds ``lock``:
        self.socket: zmq.Socket[bytes] | None = None
        self.blocked = False  # the socket refused a send (high-water mark)
        self.carry: bytes | None = None  # a built frame the socket refused
        self.carry_count = 0
        self.unanswered = 0  # asks and pings sent on the socket, answers not yet read
        self.seen = False  # a frame arrived since the last heartbeat tick
        self.tally = Tally()
        # I/O thread only (``polled``: set under ``lock``, cleared without it):
        self.fd = -1  # the socket's ZMQ_FD, which the I/O thread polls
        self.polled = False  # ``fd`` is in the I/O thread's poll set
        self.monitor: zmq.Socket[bytes] | None = None
        self.last_seen = 0.0
        self.suspect = False

    def needs_reader(self) -> bool:
        """Whether the I/O thread must watch the socket: answers are due
        that no sync asker is waiting for, or a refused send must be
        retried. The caller holds ``lock``."""
        return self.unanswered > 0 or self.blocked or self.carry is not None
