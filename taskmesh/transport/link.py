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
from collections.abc import Iterator
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
        "batch_count",
        "blocked",
        "carry",
        "carry_count",
        "credit",
        "credit_due",
        "down_since",
        "epoch",
        "fd",
        "granted",
        "last_seen",
        "lock",
        "monitor",
        "parked",
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
        "tickets",
        "unanswered",
        "wait_ms",
        "window",
    )

    def __init__(self, address: str, server_key: bytes | None, window: int = 0) -> None:
        self.address = address
        self.server_key = server_key
        self.window = window  # tells per actor not yet credited (0: no flow control)
        # Envelopes per frame: with flow control, a quarter of the window, so
        # that the peer takes (and credits) a window in several frames while
        # more are on their way, instead of one frame holding all of it.
        self.batch_count = max(16, window // 4) if window else 4096
        # Any thread: senders append encoded envelopes (deque append/popleft
        # are atomic) and read ``state``; the I/O thread writes ``state``.
        self.queue: deque[bytes] = deque()
        self.state: str = CONNECTING
        self.reason = ""
        self.scheduled = False  # in the outbox's ready deque (see Outbox.enqueue)
        # Set by whoever drains the queue; a sender that found it full waits on it.
        self.space = threading.Event()
        self.lock = allocate_lock()  # held by whoever uses ``socket``
        # Flow control (see taskmesh.transport.flow): senders take tickets per
        # actor (any thread; itertools.count is atomic) and may send while a
        # ticket is below what ``granted`` says (written under ``lock``).
        self.tickets: dict[str, Iterator[int]] = {}
        self.granted: dict[str, int] = {}
        self.credit = threading.Event()  # set when credit comes or the link resets
        self.epoch = 0  # bumped (under ``lock``) when the counts start afresh
        # Whoever holds ``lock``:
        self.socket: zmq.Socket[bytes] | None = None
        self.blocked = False  # the socket refused a send (high-water mark)
        self.carry: bytes | None = None  # a built frame the socket refused
        self.carry_count = 0
        self.unanswered = 0  # asks and pings sent on the socket, answers not yet read
        self.credit_due = 0  # tells sent on the socket, not yet credited back
        self.seen = False  # a frame arrived since the last heartbeat tick
        self.wait_ms = -1  # the RCVTIMEO set on ``socket`` (-1: ZeroMQ's default)
        self.tally = Tally()
        # I/O thread only (``polled``: set under ``lock``, cleared without it):
        self.fd = -1  # the socket's ZMQ_FD, which the I/O thread polls
        self.polled = False  # ``fd`` is in the I/O thread's poll set
        # Set by the I/O thread when it found the socket held (its fd then
        # leaves the poll set); whoever lets go of the socket clears it and
        # hands the link back (Outbox.let_go).
        self.parked = False
        self.monitor: zmq.Socket[bytes] | None = None
        self.last_seen = 0.0
        self.suspect = False
        self.down_since = 0.0  # when it went down (0: not down)

    def needs_reader(self) -> bool:
        """Whether the I/O thread must watch the socket: answers or credit
        are due that no sync asker is waiting for, or a refused send must be
        retried. The caller holds ``lock``."""
        return self.unanswered > 0 or self.credit_due > 0 or self.blocked or self.carry is not None

    def add_credit(self, target: str, n: int) -> None:
        """The peer took ``n`` more tells for ``target``; the caller holds ``lock``."""
        self.granted[target] = self.granted.get(target, self.window) + n
        self.credit_due = max(0, self.credit_due - n)
        self.credit.set()

    def reset_credit(self) -> None:
        """Start the counts afresh (a new connection: the peer starts from
        zero too); the caller holds ``lock``. Waiting senders look again."""
        self.tickets = {}
        self.granted = {}
        self.credit_due = 0
        self.epoch += 1
        self.credit.set()
