"""Helpers for tests that need a real etcd: polling, child processes, a TCP proxy.

Every process and thread these helpers start is stopped by the fixture or
context manager that started it, also when the test fails.
"""

from __future__ import annotations

import contextlib
import json
import queue
import select
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

from taskmesh.cluster import ClusterMember
from taskmesh.cluster.embedded import die_with_parent
from tests.waiting import wait_until as poll

T = TypeVar("T")

MemberFactory = Callable[..., ClusterMember]
"""The ``make_member`` fixture: ``make_member(node, **settings)`` -> a started member."""

LEASE_TTL = 3
"""The default lease TTL (seconds) that the tests' members use."""

SLACK = 3.0
"""What etcd's expiry check (every 0.5 s), the watches and a loaded 2-core
machine may add to a lease TTL before a dead member's keys are gone."""

CHILD_SCRIPT = Path(__file__).parent / "integration" / "cluster" / "member_child.py"


def wait_until(
    predicate: Callable[[], object],
    timeout: float = 10.0,
    *,
    interval: float = 0.02,
    what: str = "",
) -> float:
    """Poll ``predicate`` until it is truthy; return the seconds it took, or fail the test."""
    start = time.monotonic()
    poll(predicate, timeout, interval=interval, message=what or str(predicate))
    return time.monotonic() - start


def wait_until_value(produce: Callable[[], T | None], timeout: float = 10.0) -> T:
    """Poll ``produce`` until it returns something other than None, and return that."""
    box: list[T] = []

    def ready() -> bool:
        value = produce()
        if value is not None:
            box.append(value)
        return value is not None

    wait_until(ready, timeout, what=f"a value from {produce}")
    return box[-1]


def unique_cluster() -> str:
    """A cluster name no other test uses, so tests can share one etcd."""
    return "t-" + uuid.uuid4().hex[:10]


class ChildMember:
    """A `ClusterMember` in its own Python process (``member_child.py``).

    It prints one line per event (``READY``, ``ELECTED <token>``,
    ``DEMOTED``, ``START <singleton>``, ``STOP <singleton>``, ``WRITE ok``,
    ``WRITE fenced``) and reads commands on stdin (``write``, ``quit``).
    """

    def __init__(self, config: dict[str, Any]) -> None:
        self.config = config
        self.node: str = config["node"]
        self.lines: queue.Queue[str] = queue.Queue()
        self.seen: list[str] = []
        self.proc = subprocess.Popen(
            die_with_parent([sys.executable, str(CHILD_SCRIPT), json.dumps(config)]),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            bufsize=1,
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(line.strip())

    def expect(self, prefix: str, timeout: float = 15.0) -> str:
        """Wait for an output line starting with ``prefix`` and return it."""
        for line in self.seen:
            if line.startswith(prefix):
                self.seen.remove(line)
                return line
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0 or (self.proc.poll() is not None and self.lines.empty()):
                raise AssertionError(
                    f"child {self.node} did not print {prefix!r}; "
                    f"seen {self.seen}, stderr: {self.stderr_tail()}"
                )
            try:
                line = self.lines.get(timeout=min(left, 0.2))
            except queue.Empty:
                continue
            if line.startswith(prefix):
                return line
            self.seen.append(line)

    def send(self, command: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(command + "\n")
        self.proc.stdin.flush()

    def signal(self, sig: int) -> None:
        self.proc.send_signal(sig)

    def stderr_tail(self) -> str:
        if self.proc.poll() is None or self.proc.stderr is None:
            return "(running)"
        return self.proc.stderr.read()[-2000:]

    def close(self) -> None:
        """Kill the child if it still runs (resuming it first if stopped)."""
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.send_signal(signal.SIGCONT)
                self.proc.kill()
        self.proc.wait(10)
        for stream in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            if stream is not None:
                with contextlib.suppress(OSError):
                    stream.close()


@contextlib.contextmanager
def child_member(**config: Any) -> Iterator[ChildMember]:
    """Start a `ChildMember` and wait until it reports READY; always kill it after."""
    child = ChildMember(config)
    try:
        child.expect("READY", timeout=30.0)
        yield child
    finally:
        child.close()


class TcpProxy:
    """A loopback TCP proxy to one upstream port that a test can cut and restore.

    Cutting closes every relayed connection and refuses new ones, as a
    network partition would, while the upstream keeps running.
    """

    def __init__(self, upstream_port: int) -> None:
        self.upstream = ("127.0.0.1", upstream_port)
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(64)
        self.port: int = self._listener.getsockname()[1]
        self._open = threading.Event()
        self._open.set()
        self._closed = False
        self._lock = threading.Lock()
        self._conns: list[socket.socket] = []
        self._threads: list[threading.Thread] = []
        self._accepter = threading.Thread(target=self._accept, daemon=True)
        self._accepter.start()

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            if not self._open.is_set():
                client.close()
                continue
            try:
                upstream = socket.create_connection(self.upstream, timeout=2.0)
            except OSError:
                client.close()
                continue
            upstream.settimeout(None)
            with self._lock:
                self._conns += [client, upstream]
            thread = threading.Thread(target=self._relay, args=(client, upstream), daemon=True)
            self._threads.append(thread)
            thread.start()

    def _relay(self, a: socket.socket, b: socket.socket) -> None:
        pair = {a: b, b: a}
        try:
            while self._open.is_set():
                readable, _, _ = select.select([a, b], [], [], 0.2)
                for sock in readable:
                    data = sock.recv(65536)
                    if not data:
                        return
                    pair[sock].sendall(data)
        except OSError:
            return
        finally:
            for sock in (a, b):
                with contextlib.suppress(OSError):
                    sock.close()

    def cut(self) -> None:
        """Drop every connection and refuse new ones."""
        self._open.clear()
        with self._lock:
            conns, self._conns = self._conns, []
        for sock in conns:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            with contextlib.suppress(OSError):
                sock.close()

    def restore(self) -> None:
        """Accept and relay connections again."""
        self._open.set()

    def close(self) -> None:
        self._closed = True
        self.cut()
        with contextlib.suppress(OSError):
            self._listener.shutdown(socket.SHUT_RDWR)
        self._listener.close()
        self._accepter.join(5)
        for thread in self._threads:
            thread.join(5)
