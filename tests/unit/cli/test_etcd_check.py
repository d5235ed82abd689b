"""The pre-flight etcd check: an unreachable etcd fails fast, a slow one passes."""

from __future__ import annotations

import socket
import time

import pytest

from taskmesh.cli.etcd_check import check_etcd
from taskmesh.cli.settings import Settings
from taskmesh.errors import EtcdUnavailable


def test_a_port_nobody_listens_on_is_unreachable_within_the_patience() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # closed again: refused
    started = time.monotonic()
    with pytest.raises(EtcdUnavailable, match=f"cannot reach etcd at http://127.0.0.1:{port}"):
        check_etcd(Settings(etcd=(f"http://127.0.0.1:{port}",)), patience=1.0)
    assert time.monotonic() - started < 10


def test_an_etcd_that_accepts_but_answers_late_counts_as_there() -> None:
    # A starved etcd: the kernel accepts the connection, the answer is late.
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(8)
        port = server.getsockname()[1]
        check_etcd(Settings(etcd=(f"http://127.0.0.1:{port}",)), patience=1.0)
