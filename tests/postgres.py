"""A real PostgreSQL server for tests: Debian's ``postgresql`` package,
``initdb`` in a temporary directory, ``postgres`` on a free loopback port.

PostgreSQL refuses to run as root; as root (CI) the server runs as the
``postgres`` user that the package creates. The server is stopped and its
directory removed by the context manager, also when the test fails. A
missing package is an error, never a skip (``.ci/run`` installs it).
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

from tests.waiting import wait_until

__all__ = ["postgres_server"]


def _bindir() -> Path:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    if initdb:
        return Path(initdb).resolve().parent
    raise AssertionError(
        "PostgreSQL is not installed: apt-get install postgresql (the entity store tests need it)"
    )


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _as_user() -> tuple[list[str], int | None, int | None]:
    """The command prefix and ids to run the server with (not root)."""
    if os.geteuid() != 0:
        return [], None, None
    user = pwd.getpwnam("postgres")
    return (
        ["setpriv", f"--reuid={user.pw_uid}", f"--regid={user.pw_gid}", "--clear-groups"],
        (user.pw_uid),
        user.pw_gid,
    )


@contextlib.contextmanager
def postgres_server(timeout: float = 30.0) -> Iterator[str]:
    """Start a throwaway server; yield its DSN."""
    bindir = _bindir()
    prefix, uid, gid = _as_user()
    home = Path(tempfile.mkdtemp(prefix="taskmesh-pg-"))
    data = home / "data"
    if uid is not None and gid is not None:
        os.chown(home, uid, gid)
    port = _free_port()
    process: subprocess.Popen[bytes] | None = None
    try:
        subprocess.run(
            [*prefix, str(bindir / "initdb"), "-D", str(data), "-U", "postgres",
             "--auth=trust", "-E", "UTF8", "--no-sync"],
            check=True, capture_output=True, timeout=120,
        )  # fmt: skip
        process = subprocess.Popen(
            [*prefix, str(bindir / "postgres"), "-D", str(data), "-p", str(port),
             "-k", str(home), "-c", "listen_addresses=127.0.0.1", "-c", "fsync=off",
             "-c", "full_page_writes=off", "-c", "synchronous_commit=off"],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True,
        )  # fmt: skip
        dsn = f"postgresql://postgres@127.0.0.1:{port}/postgres"
        _wait_ready(dsn, process, timeout)
        yield dsn
    finally:
        if process is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGQUIT)  # immediate shutdown
            try:
                process.wait(15)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
                process.wait(15)
            if process.stderr is not None:
                process.stderr.close()
        shutil.rmtree(home, ignore_errors=True)


def _wait_ready(dsn: str, process: subprocess.Popen[bytes], timeout: float) -> None:
    import psycopg

    def accepts() -> bool:
        if process.poll() is not None:
            stderr = process.stderr.read().decode() if process.stderr else ""
            raise AssertionError(f"postgres exited: {stderr[-2000:]}")
        try:
            psycopg.connect(dsn, connect_timeout=2).close()
        except psycopg.OperationalError:
            return False
        return True

    wait_until(accepts, timeout, interval=0.05, message="postgres to accept connections")
