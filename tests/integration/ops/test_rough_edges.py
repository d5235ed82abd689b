"""Rough edges a newcomer hit in the README's tour, each with real processes."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator

import psutil

from tests.integration.node.support import NodeProcess, cli, running_node
from tests.waiting import wait_until

GRPC_NOISE = ("StatusCode", "Rendezvous", "debug_error_string", "Traceback")


@contextlib.contextmanager
def terminal_node(*args: str, name: str) -> Iterator[NodeProcess]:
    """A node started as a shell starts a job: leading its own process group."""
    node = NodeProcess(*args, name=name, own_group=True)
    try:
        node.wait_ready()
        yield node
    finally:
        node.close()


def test_ctrl_c_on_the_node_embedding_etcd_leaves_first_then_one_line_on_the_others() -> None:
    cluster = "c" + uuid.uuid4().hex[:8]
    with terminal_node("--cluster", cluster, name="first") as first:
        etcd = [
            p for p in psutil.Process(first.proc.pid).children() if "etcd" in " ".join(p.cmdline())
        ]
        assert len(etcd) == 1, "the embedded etcd runs as the node's child"
        assert os.getpgid(etcd[0].pid) != os.getpgid(first.proc.pid), "etcd has its own group"
        with running_node("--etcd", first.etcd, "--cluster", cluster, name="second") as second:
            before = len(second.stderr)
            os.killpg(first.proc.pid, signal.SIGINT)  # what Ctrl-C in its terminal does
            assert first.proc.wait(60) == 0
            first.expect("stopped")
            left = "\n".join(first.stderr)
            assert "could not revoke" not in left and "leaving the cluster failed" not in left
            wait_until(lambda: not etcd[0].is_running(), timeout=30, message="etcd to stop")

            wait_until(
                lambda: any("cannot reach etcd at " + first.etcd in line
                            for line in second.stderr[before:]),
                timeout=30, message="the remaining node to say etcd is gone",
            )  # fmt: skip
            # Give the watches and the lease time to notice too: they must stay quiet.
            deadline = time.monotonic() + 6
            wait_until(lambda: time.monotonic() > deadline, timeout=10, interval=0.5)
            after = second.stderr[before:]
            noisy = [line for line in after if any(word in line for word in GRPC_NOISE)]
            assert noisy == [], noisy
            said = [line for line in after if "etcd" in line]
            assert len(said) == 1, after
            assert [line for line in after if "WARNING" in line or "ERROR" in line] == said
            assert second.proc.poll() is None, "the remaining node keeps serving"
            assert second.terminate() == 0


def test_an_unreachable_etcd_fails_within_seconds_naming_the_url() -> None:
    url = "http://127.0.0.1:1"
    commands = {
        "node": ["node", "--etcd", url, "--name", "lonely"],
        "members": ["members", "--etcd", url],
        "ask": ["ask", "echo", "1", "--etcd", url],
    }
    results: dict[str, tuple[subprocess.CompletedProcess[str], float]] = {}

    def run(key: str) -> None:
        started = time.monotonic()
        done = cli(*commands[key], timeout=60)
        results[key] = (done, time.monotonic() - started)

    threads = [threading.Thread(target=run, args=(key,)) for key in commands]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(90)
    for key, (done, took) in results.items():
        assert done.returncode == 1, (key, done.stderr)
        assert done.stderr.startswith(f"taskmesh: error: cannot reach etcd at {url}"), done.stderr
        assert done.stderr.count("\n") == 1, done.stderr
        # Was 16.8 s (node) and 7.5 s (client commands); the check gives up after 3 s.
        assert took < 12, f"{key} took {took:.1f} s"
    assert set(results) == set(commands)


def test_help_shows_defaults_and_placeholders_not_types() -> None:
    node_help = cli("node", "--help").stdout
    assert "<" not in node_help and "list[" not in node_help
    assert "--lease-ttl SECONDS" in node_help and "[default: 3.0]" in node_help
    assert "[default: 10.0]" in node_help and "[default: tcp://127.0.0.1:0]" in node_help
    overview = cli("--help").stdout
    commands = overview.split("Commands:")[1]
    assert "..." not in commands, commands
    assert "dead-letters" in commands
