"""The outbound link to one peer, shared by sending threads and the I/O thread.

Sending threads only append encoded envelopes to ``queue`` (a deque: append
and popleft are atomic, so no lock is taken on the hot path) and read
``state``. Everything else, the socket included, belongs to the I/O thread.
"""

from __future__ import annotations

import threading
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
        "last_seen",
        "monitor",
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
        # Set by the I/O thread whenever it drains the queue; a sender that
        # found the queue full waits on it.
        self.space = threading.Event()
        # I/O thread only:
        self.socket: zmq.Socket[bytes] | None = None
        self.monitor: zmq.Socket[bytes] | None = None
        self.blocked = False  # the socket refused a send (high-water mark)
        self.carry: bytes | None = None  # a built frame the socket refused
        self.carry_count = 0
        self.seen = False  # a frame arrived since the last heartbeat tick
        self.last_seen = 0.0
        self.suspect = False
