"""Embedded etcd: start, restart on the same ports, and no orphan when the parent dies."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import psutil
import pytest

from taskmesh.cluster import EmbeddedEtcd
from taskmesh.cluster.etcd import EtcdClient
from taskmesh.errors import ConfigError
from tests.etcd_fixtures import wait_until

pytestmark = pytest.mark.integration


def test_a_member_restarts_on_its_ports_with_its_data(tmp_path: Path) -> None:
    server = EmbeddedEtcd(data_dir=tmp_path / "etcd")
    try:
        server.start()
        endpoint = server.endpoint
        assert endpoint.startswith("http://127.0.0.1:")
        client = EtcdClient(endpoint)
        client.put("/kept", b"yes")
        server.stop()
        assert not server.running()
        server.start()
        assert server.endpoint == endpoint
        kv = client.get("/kept")
        assert kv is not None and kv.value == b"yes"
        client.close()
        assert (tmp_path / "etcd" / "etcd.log").exists()
    finally:
        server.close()
    assert (tmp_path / "etcd").exists()  # a given data directory is kept


def test_a_missing_binary_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError):
        EmbeddedEtcd(binary=tmp_path / "no-such-etcd")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux-only")
def test_etcd_dies_with_a_killed_parent(tmp_path: Path) -> None:
    script = textwrap.dedent(
        """
        import sys
        from taskmesh.cluster import EmbeddedEtcd
        server = EmbeddedEtcd(data_dir=sys.argv[1]).start()
        print(server.pid, flush=True)
        sys.stdin.read()
        """
    )
    parent = subprocess.Popen(
        [sys.executable, "-c", script, str(tmp_path / "etcd")],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    etcd_pid = None
    try:
        assert parent.stdout is not None
        etcd_pid = int(parent.stdout.readline())
        assert psutil.pid_exists(etcd_pid)
        parent.kill()
        parent.wait(10)
        wait_until(lambda: not _alive(etcd_pid), 10, what="etcd to die with its parent")
    finally:
        if parent.poll() is None:
            parent.kill()
            parent.wait(10)
        if etcd_pid is not None and _alive(etcd_pid):
            os.kill(etcd_pid, signal.SIGKILL)
        for stream in (parent.stdin, parent.stdout):
            if stream is not None:
                stream.close()


def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def test_a_port_already_taken_fails_fast_with_etcd_unavailable() -> None:
    from taskmesh.cluster.embedded import free_port
    from taskmesh.errors import EtcdUnavailable

    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        taken = squatter.getsockname()[1]
        server = EmbeddedEtcd(client_port=taken, peer_port=free_port(), start_timeout=20)
        try:
            with pytest.raises(EtcdUnavailable, match="did not start"):
                server.start()
        finally:
            server.close()
