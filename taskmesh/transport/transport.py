"""The transport facade: one node's (or client's) endpoint in the mesh."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any, Protocol

from taskmesh.actors.deadletters import DeadLetters
from taskmesh.errors import ActorNotFound, ConfigError, TransportError
from taskmesh.ops.latency import LatencyHistogram
from taskmesh.transport.counters import Counters, Tally
from taskmesh.transport.flow import Deliver, Inflow, Room
from taskmesh.transport.iothread import IOThread
from taskmesh.transport.link import DOWN
from taskmesh.transport.outbox import DeadLetterSink, Outbox, PeerListener
from taskmesh.transport.ref import RemoteRef
from taskmesh.transport.security import CurveKeys
from taskmesh.transport.sender import Sender
from taskmesh.transport.sockets import SocketOptions
from taskmesh.transport.traced import Arrivals

__all__ = ["TraceHooks", "Transport"]

_LEAD_HOLD = 0.001  # s a sync asker may keep a link's socket waiting for its answer


class TraceHooks(Arrivals, Protocol):
    """Tracing, for the transport (see :mod:`taskmesh.transport.traced`)."""

    def sender(self, outbox: Outbox, io: IOThread, *, max_message_size: int, hold: float) -> Sender:
        """The sender to use (made once, with the transport)."""
        ...


def _no_actors(target: str, message: Any, reply: Any, deadline: Any, key: Any = None) -> None:
    raise ActorNotFound(f"no actor named {target!r}: this process hosts no actors")


class Transport:
    """One node's (or client's) endpoint in the mesh.

    ``listen`` is the ZeroMQ endpoint the inbound ROUTER binds (port ``0``
    picks a free one; ``None`` for a client that only sends); ``address``
    is what peers dial, read back after :meth:`start`. ``deliver`` hands
    inbound messages to local actors (see :data:`Deliver`). ``dead_letters``
    is the store every undelivered message goes to (one is made if none is
    given). ``keys`` turns on CURVE. ``max_message_size`` bounds one encoded
    message; every node of a mesh should use the same value. ``max_queue``
    bounds the messages waiting for one peer; a sender finding it full
    waits up to ``send_timeout`` seconds, then the message is a dead letter
    (tell) or :class:`PeerUnreachable` (ask). ``window`` is how many tells
    to one actor may be on their way before the receiving node has taken
    them (flow control, see :mod:`~taskmesh.transport.flow`; 0 turns it
    off); ``room`` tells the transport when a full mailbox here has room
    again (``ActorSystem.on_space``). A peer that answers no heartbeat
    (sent every ``heartbeat_interval`` s) for ``suspect_after`` s is
    reported ``suspect`` to :meth:`subscribe` listeners; a link down for
    ``stale_after`` s with nothing queued is closed (its peer left or moved;
    a later ref opens a fresh one). ``tracing`` turns on W3C trace context
    in envelopes and spans per message (see :mod:`taskmesh.tracing`).
    """

    def __init__(
        self,
        *,
        listen: str | None = "tcp://127.0.0.1:0",
        deliver: Deliver | None = None,
        dead_letters: DeadLetterSink | None = None,
        keys: CurveKeys | None = None,
        advertise: str | None = None,
        max_message_size: int = 1 << 20,
        max_queue: int = 10_000,
        send_timeout: float = 1.0,
        heartbeat_interval: float = 0.2,
        suspect_after: float = 0.9,
        connect_timeout: float = 1.0,
        stale_after: float = 60.0,
        high_water_mark: int = 1000,
        linger: float = 1.0,
        lead_hold: float = _LEAD_HOLD,
        window: int = 2048,
        room: Room | None = None,
        tracing: TraceHooks | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if max_message_size < 64:
            raise ConfigError("max_message_size must be at least 64 bytes")
        self.dead_letters: DeadLetterSink = (
            dead_letters if dead_letters is not None else DeadLetters()
        )
        self.keys = keys
        self.max_message_size = max_message_size
        self.address = ""
        self.counters = Counters()
        if window < 0:
            raise ConfigError("window must be >= 0 (0: no flow control)")
        self._outbox = Outbox(
            max_queue=max_queue, send_timeout=send_timeout, clock=clock,
            dead_letters=self.dead_letters, window=window,
        )  # fmt: skip
        inflow = Inflow(
            self._outbox, deliver or _no_actors, room,
            max_parked=max_queue, max_message_size=max_message_size,
        )  # fmt: skip
        options = SocketOptions(
            keys=keys, max_message_size=max_message_size, high_water_mark=high_water_mark,
            connect_timeout=connect_timeout, linger=linger,
        )  # fmt: skip
        self._io = IOThread(
            self._outbox, inflow, options,
            listen=listen, advertise=advertise, max_message_size=max_message_size,
            heartbeat_interval=heartbeat_interval, suspect_after=suspect_after,
            stale_after=stale_after, counters=self.counters, clock=clock,
        )  # fmt: skip
        make_sender = Sender if tracing is None else tracing.sender
        self._sender = make_sender(
            self._outbox, self._io, max_message_size=max_message_size, hold=lead_hold
        )
        self._io.inbound.trace = tracing
        self._thread: threading.Thread | None = None
        self._stopped = False

    # --- lifecycle (caller's thread) -------------------------------------

    def start(self, timeout: float = 10.0) -> None:
        """Bind, start the I/O thread and return once ``address`` is known."""
        if self._thread is not None:
            raise TransportError("transport already started")
        io = self._io
        self._thread = threading.Thread(target=io.run, name="taskmesh-transport-io", daemon=True)
        self._thread.start()
        if not io.ready.wait(timeout):
            raise TransportError("transport I/O thread did not start")
        if io.error is not None:
            self._thread.join()
            self._stopped = True
            raise io.error
        self.address = io.advertise or io.bound

    def stop(self, timeout: float = 10.0) -> None:
        """Stop: send what is queued to peers that are up (ZeroMQ gets
        ``linger`` seconds to put it on the wire), fail pending asks,
        dead-letter the rest, close sockets. Idempotent."""
        thread = self._thread
        if thread is None or self._stopped:
            return
        self._stopped = True
        self._outbox.stopping = True
        self._outbox.wake()
        thread.join(timeout)

    def __enter__(self) -> Transport:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # --- public API (any thread) -----------------------------------------

    def ref(self, address: str, name: str, *, server_key: bytes | None = None) -> RemoteRef:
        """A reference to actor ``name`` at the peer listening on ``address``.

        ``server_key`` is the peer's CURVE public key (Z85), needed when this
        transport has keys. The link is opened on first use and kept.
        """
        if self.keys is not None and server_key is None:
            raise ConfigError(f"CURVE is on: give the server_key of {address}")
        return RemoteRef(self._sender, self._outbox.link(address, server_key), name)

    def subscribe(self, listener: PeerListener) -> None:
        """Call ``listener(address, state)`` when a peer link goes ``up``,
        ``suspect`` (no heartbeat answer for ``suspect_after`` seconds) or
        ``down``. Runs on the I/O thread."""
        self._outbox.listeners.append(listener)

    def peer_state(self, address: str) -> str | None:
        """``connecting``, ``up``, ``suspect``, ``down``, or None if unknown."""
        link = self._outbox.links.get(address)
        if link is None:
            return None
        return "suspect" if link.suspect and link.state != DOWN else link.state

    def flush(self, timeout: float = 5.0) -> bool:
        """Wait until every queued outbound message was handed to ZeroMQ
        (or dead-lettered); True if that happened within ``timeout`` s.

        ``stop`` then gives ZeroMQ up to ``linger`` seconds to put them on
        the wire. Polls: it is for the end of a short-lived client.
        """
        outbox = self._outbox
        router = self._io.router
        deadline = time.monotonic() + timeout
        while True:
            if (router is None or not router.queue) and all(
                not link.queue and link.carry is None for link in list(outbox.links.values())
            ):
                return True
            if time.monotonic() >= deadline or self._thread is None or outbox.stopping:
                return False
            time.sleep(0.001)

    @property
    def handling(self) -> LatencyHistogram | None:
        """Seconds from a remote ask's arrival here to its answer (queueing
        and handling), or None for a transport that listens to nobody."""
        router = self._io.router
        return router.handling if router is not None else None

    def snapshot(self) -> dict[str, Any]:
        """Counters as a plain dict, plus pending asks and peer states."""
        outbox = self._outbox
        tallies: list[Tally] = [link.tally for link in list(outbox.links.values())]
        router = self._io.router
        if router is not None:
            tallies.append(router.tally)
        snap = self.counters.snapshot(tallies)
        counts = getattr(self.dead_letters, "counts", None)
        snap["dead_letters"] = counts() if counts is not None else {}
        snap["asks_pending"] = len(outbox.pending)
        snap["peers"] = {a: self.peer_state(a) for a in list(outbox.links)}
        return snap
