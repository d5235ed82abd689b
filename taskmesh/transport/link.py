"""The outbound link to one peer, shared by sending threads and the I/O thread.

Sending threads append encoded envelopes to ``queue`` (a deque: append and
popleft are atomic) and read ``state``. The socket belongs to whoever holds
``lock``: the I/O thread, or for a moment a thread doing a sync ask, which
sends its ask and reads its answer itself (two thread hand-offs fewer; see
``Transport._lead``). The I/O thread polls the socket's file descriptor,
never the socket, so it does not touch the socket without the lock.
"""

from __future__ import annotations

import threading
from _thread import allocate_lock
from collections import deque
from typing import TYPE_CHECKING, Final

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
        "parked",
        "queue",
        "reason",
        "seen",
        "server_key",
        "socket",
        "space",
        "state",
        "suspect",
    )

    def __init__(self, address: str, server_key: bytes | None) -> None:
        self.address = address
        self.server_key = server_key
        self.queue: deque[bytes] = deque()
        self.state: str = CONNECTING
        self.reason = ""
        # Set by whoever drains the queue; a sender that found it full waits on it.
        self.space = threading.Event()
        self.lock = allocate_lock()  # held by whoever uses ``socket``
        # I/O thread only:
        self.fd = -1  # the socket's ZMQ_FD, which the I/O thread polls
        self.parked = False  # look again at the next turn (fd out of the poll, or unread)
        self.monitor: zmq.Socket[bytes] | None = None
        # Whoever holds ``lock``:
        self.socket: zmq.Socket[bytes] | None = None
        self.blocked = False  # the socket refused a send (high-water mark)
        self.carry: bytes | None = None  # a built frame the socket refused
        self.carry_count = 0
        self.seen = False  # a frame arrived since the last heartbeat tick
        self.last_seen = 0.0
        self.suspect = False
