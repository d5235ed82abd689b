"""SIGTERM and SIGINT drain a node whichever of its threads the kernel hands them to."""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
from pathlib import Path

import pytest

from tests.faults.conftest import Nodes

pytestmark = pytest.mark.integration


def other_thread(pid: int, sig: int) -> int:
    """A thread of ``pid`` other than its main one that does not block ``sig``."""
    for task in sorted(Path(f"/proc/{pid}/task").iterdir(), key=lambda p: int(p.name)):
        tid = int(task.name)
        if tid == pid:
            continue
        status = (task / "status").read_text()
        blocked = int(
            next(ln for ln in status.splitlines() if ln.startswith("SigBlk:")).split()[1], 16
        )
        if not blocked & (1 << (sig - 1)):
            return tid
    raise AssertionError(f"process {pid} has no other thread that takes signal {sig}")


def tgkill(pid: int, tid: int, sig: int) -> None:
    """Send ``sig`` to one thread of ``pid`` (what the kernel may do with any signal)."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.tgkill(pid, tid, sig) != 0:
        raise OSError(ctypes.get_errno(), os.strerror(ctypes.get_errno()))


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_stop_signal_sent_to_a_non_main_thread_drains_the_node(nodes: Nodes, sig: int) -> None:
    node = nodes.start("sig")
    pid = node.proc.pid
    tgkill(pid, other_thread(pid, sig), sig)
    try:
        code = node.proc.wait(30)
    except subprocess.TimeoutExpired:
        raise AssertionError("the node ignored a stop signal sent to one of its threads") from None
    assert code == 0, node.stderr[-20:]
    node.expect("stopped", timeout=5)
    assert "taskmesh: stopping: draining in-flight work" in node.output
    assert nodes.members() == []
