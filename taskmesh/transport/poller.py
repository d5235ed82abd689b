"""What the I/O thread waits on: file descriptors, in one ``poll`` call.

``zmq.Poller`` (``zmq_poll``) makes two ``poll`` system calls per wait that
finds nothing ready at once (a first pass with no timeout, then the real
wait) and asks every socket item for ZMQ_EVENTS on top. The I/O thread
only ever waits on file descriptors (the router's, the links', the
waker's, the monitors'), so it uses ``select.poll`` instead: one system
call per wait, measured about 1 % of a remote sync ask on the 2-core
machine. A monitor socket is registered by its descriptor and reported as
the socket, so the caller can tell the two kinds apart (``type(key) is int``).

A ZeroMQ socket's descriptor says only that its command pipe has input;
whoever reads a socket woken this way reads until it has nothing left
(``Liveness.read_monitor`` reads until ``zmq.Again``), as with ``zmq_poll``
on descriptors before.

Used by the I/O thread only.
"""

from __future__ import annotations

import select
from contextlib import suppress
from typing import Final

import zmq

__all__ = ["Poller"]

_POLLIN: Final = select.POLLIN

Key = int | zmq.Socket[bytes]


class Poller:
    """Registered descriptors (and monitor sockets, by descriptor)."""

    def __init__(self) -> None:
        self._poll = select.poll()
        self._sockets: dict[int, zmq.Socket[bytes]] = {}
        self._fds: dict[zmq.Socket[bytes], int] = {}

    def register(self, key: Key) -> None:
        """Wait for input on ``key`` (a descriptor, or a socket by its own)."""
        if type(key) is int:
            self._poll.register(key, _POLLIN)
            return
        assert isinstance(key, zmq.Socket)
        fd = key.getsockopt(zmq.FD)
        assert isinstance(fd, int)
        self._sockets[fd] = key
        self._fds[key] = fd
        self._poll.register(fd, _POLLIN)

    def unregister(self, key: Key) -> None:
        """Stop waiting on ``key``; unknown keys are ignored."""
        if type(key) is int:
            fd = key
        else:
            assert isinstance(key, zmq.Socket)
            fd = self._fds.pop(key, -1)
            self._sockets.pop(fd, None)
        with suppress(KeyError):
            self._poll.unregister(fd)

    def poll(self, timeout_ms: int) -> list[tuple[Key, int]]:
        """Wait up to ``timeout_ms`` for input; ``(key, events)`` per ready one."""
        events = self._poll.poll(timeout_ms)
        sockets = self._sockets
        if not sockets or not events:
            return events  # type: ignore[return-value]
        return [(sockets.get(fd, fd), ev) for fd, ev in events]
