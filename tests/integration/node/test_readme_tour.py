"""The README's five-minute tour, step by step, as a newcomer types it
(with a free metrics port instead of 9464)."""

from __future__ import annotations

import json
import socket
import urllib.request

from tests.integration.node.support import cli, running_node


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_the_readme_tour_works_as_written() -> None:
    port = str(free_port())
    with running_node("--app", "examples.tour:setup", "--metrics-port", port, name="n1") as n1:
        assert n1.etcd.startswith("http://127.0.0.1:")
        assert n1.metrics == f"http://127.0.0.1:{port}"
        with running_node("--etcd", n1.etcd, "--app", "examples.tour:setup", name="n2"):
            environ = {"TASKMESH_ETCD": n1.etcd}
            asked = cli("ask", "echo-n2", '{"hello": "world"}', environ=environ)
            assert asked.returncode == 0, asked.stderr
            assert json.loads(asked.stdout) == {"echo": {"hello": "world"}, "from": "n2"}
            routed = cli("ask", "echo", '"hi"', "--capability", environ=environ)
            assert json.loads(routed.stdout)["from"] in ("n1", "n2")
            for command in ("members", "actors", "routes", "leader"):
                shown = cli(command, environ=environ)
                assert shown.returncode == 0, shown.stderr
            assert "echo-n1" in cli("actors", environ=environ).stdout
            balanced = cli(
                "ask", "echo", '"hi"', "--capability", "--strategy", "least_loaded",
                environ=environ,
            )  # fmt: skip
            assert json.loads(balanced.stdout)["from"] in ("n1", "n2")
            told = cli("tell", "echo-n1", '{"fire": "and forget"}', environ=environ)
            assert told.returncode == 0, told.stderr
            letters = cli("dead-letters", environ=environ)
            assert letters.returncode == 0, letters.stderr
            assert "0 dead letters on 2 nodes" in letters.stdout
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=10) as r:
                assert "<title>taskmesh cluster</title>" in r.read().decode()
            top = cli("top", "--iterations", "1", environ=environ)
            assert "n1" in top.stdout and "n2" in top.stdout
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as r:
                metrics = r.read().decode()
            assert "taskmesh_members 2.0" in metrics
        assert n1.terminate() == 0
        n1.expect("stopped")
