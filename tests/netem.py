"""`LinkProxy`: a userspace TCP proxy that makes a loopback link behave like Wi-Fi or LTE.

This kernel has no ``netem``, so tests put this between a node and whoever
dials it (peers, clients) or between nodes and etcd. Each direction of each
connection delays its bytes by ``delay`` ± ``jitter`` seconds, keeping their
order (as TCP does); `reset` closes every connection with a TCP reset, and
`black_hole` holds all traffic for a while and then lets it through, as
TCP's retransmissions would after a short outage.
"""

from __future__ import annotations

import contextlib
import queue
import random
import socket
import struct
import threading
import time

__all__ = ["LinkProxy"]


class LinkProxy:
    """Relays a loopback port to ``upstream`` (host, port) with latency and faults.

    ``reset_every`` (seconds) resets all connections periodically; ``seed``
    makes the jitter repeatable. Every thread it starts ends with `close`.
    """

    def __init__(
        self,
        upstream: tuple[str, int],
        *,
        delay: float = 0.0,
        jitter: float = 0.0,
        reset_every: float | None = None,
        seed: int = 0,
    ) -> None:
        self.upstream = upstream
        self.delay = delay
        self.jitter = jitter
        self._random = random.Random(seed)
        self._lock = threading.Lock()
        self._conns: list[tuple[socket.socket, socket.socket]] = []
        self._threads: list[threading.Thread] = []
        self._closed = threading.Event()
        self._hole_until = 0.0
        self.resets = 0
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(128)
        self.port: int = self._listener.getsockname()[1]
        self._start(self._accept)
        if reset_every is not None:
            self.reset_every(reset_every)

    @property
    def tcp(self) -> str:
        return f"tcp://127.0.0.1:{self.port}"

    @property
    def http(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _start(self, target: object, *args: object) -> None:
        thread = threading.Thread(target=target, args=args, daemon=True)  # type: ignore[arg-type]
        with self._lock:
            self._threads.append(thread)
        thread.start()

    # --- faults ---------------------------------------------------------------

    def reset(self) -> None:
        """Reset every open connection (RST both ways); new ones are accepted."""
        with self._lock:
            conns, self._conns = self._conns, []
            self.resets += 1
        for pair in conns:
            for sock in pair:
                with contextlib.suppress(OSError):
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                with contextlib.suppress(OSError):
                    sock.close()

    def black_hole(self, seconds: float) -> None:
        """Hold every byte (and new connections) for ``seconds``, then deliver."""
        with self._lock:
            self._hole_until = time.monotonic() + seconds

    def reset_every(self, every: float, *, first: float | None = None) -> None:
        """Reset every connection each ``every`` seconds, the first time after ``first``."""
        self._start(self._reset_loop, every, every if first is None else first)

    def _reset_loop(self, every: float, first: float) -> None:
        pause = first
        while not self._closed.wait(pause):
            self.reset()
            pause = every

    # --- relaying -------------------------------------------------------------

    def _accept(self) -> None:
        while not self._closed.is_set():
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            self._start(self._open, client)

    def _open(self, client: socket.socket) -> None:
        self._hold()
        try:
            upstream = socket.create_connection(self.upstream, timeout=5.0)
        except OSError:
            client.close()
            return
        upstream.settimeout(None)
        for sock in (client, upstream):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        with self._lock:
            self._conns.append((client, upstream))
        for src, dst in ((client, upstream), (upstream, client)):
            pipe: queue.Queue[tuple[float, bytes | None]] = queue.Queue()
            self._start(self._read, src, pipe)
            self._start(self._write, dst, pipe)

    def _due(self, last: float) -> float:
        with self._lock:
            spread = self._random.uniform(-self.jitter, self.jitter)
        return max(last, time.monotonic() + max(0.0, self.delay + spread))

    def _read(self, src: socket.socket, pipe: queue.Queue[tuple[float, bytes | None]]) -> None:
        last = 0.0
        while True:
            try:
                data = src.recv(65536)
            except OSError:
                data = b""
            last = self._due(last)  # never before the bytes read earlier: order is kept
            pipe.put((last, data or None))
            if not data:
                return

    def _write(self, dst: socket.socket, pipe: queue.Queue[tuple[float, bytes | None]]) -> None:
        while True:
            due, data = pipe.get()
            # The emulated link's delay itself: hold the bytes until they are due.
            self._closed.wait(max(0.0, due - time.monotonic()))
            self._hold()
            if data is None or self._closed.is_set():
                with contextlib.suppress(OSError):
                    dst.shutdown(socket.SHUT_WR)
                return
            try:
                dst.sendall(data)
            except OSError:
                return

    def _hold(self) -> None:
        """Wait out a black hole."""
        while True:
            with self._lock:
                left = self._hole_until - time.monotonic()
            if left <= 0 or self._closed.wait(left):
                return

    def close(self) -> None:
        self._closed.set()
        with contextlib.suppress(OSError):
            self._listener.shutdown(socket.SHUT_RDWR)
        self._listener.close()
        self.reset()
        with self._lock:
            threads = list(self._threads)
        for thread in threads:
            thread.join(5)

    def __enter__(self) -> LinkProxy:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
