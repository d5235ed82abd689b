"""`StopSignals`: SIGTERM and SIGINT start the drain, whichever thread the kernel picks.

Python runs signal handlers only in the main thread, and only when it
executes bytecode. A signal the kernel delivers to another thread (any
thread may take a process-directed signal; ``tgkill`` aims at one) only
sets a flag: a main thread blocked on a lock with no timeout never runs
the handler, and the node ignored SIGTERM for good. So the main thread
waits in ``select`` on the read end of the signal wakeup fd, to which
the C-level handler writes from whatever thread it runs on; it also wakes
every second, in case a library took the wakeup fd.
"""

from __future__ import annotations

import contextlib
import select
import signal
import socket
import threading
from types import FrameType
from typing import Any

__all__ = ["StopSignals"]

_SIGNALS = (signal.SIGTERM, signal.SIGINT)


class StopSignals:
    """Catch SIGTERM and SIGINT in a ``with`` block on the main thread; `wait` for one.

    Entering installs the handlers and the wakeup fd; leaving restores what
    was there before. `requested` may be read from any thread.
    """

    def __init__(self, *, wake_every: float = 1.0) -> None:
        self._event = threading.Event()
        self._wake_every = wake_every
        self._read: socket.socket | None = None
        self._write: socket.socket | None = None
        self._previous: dict[int, Any] = {}
        self._previous_fd = -1
        self.received: int | None = None
        """The first signal that arrived, or None."""

    @property
    def requested(self) -> bool:
        """Whether a stop signal arrived."""
        return self._event.is_set()

    def __enter__(self) -> StopSignals:
        self._read, self._write = socket.socketpair()
        self._read.setblocking(False)
        self._write.setblocking(False)
        self._previous_fd = signal.set_wakeup_fd(self._write.fileno(), warn_on_full_buffer=False)
        self._previous = {sig: signal.signal(sig, self._handle) for sig in _SIGNALS}
        return self

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        signal.set_wakeup_fd(self._previous_fd)
        for sock in (self._read, self._write):
            if sock is not None:
                sock.close()
        self._read = self._write = None

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        """Main thread (Python runs handlers nowhere else)."""
        if self.received is None:
            self.received = signum
        self._event.set()

    def wait(self) -> int | None:
        """Block the main thread until SIGTERM or SIGINT arrives; return its number."""
        read = self._read
        assert read is not None, "wait() needs the with block"
        while not self._event.is_set():
            # Returning from select lets the interpreter run the pending handler.
            select.select([read], [], [], self._wake_every)
            with contextlib.suppress(BlockingIOError, InterruptedError):
                read.recv(4096)
        return self.received
