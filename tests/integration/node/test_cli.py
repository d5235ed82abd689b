"""Drive ``taskmesh`` as a user does: real node processes, real etcd, the CLI."""

from __future__ import annotations

import json
import threading
import urllib.error
import urllib.request
import uuid

import pytest

import taskmesh
from tests.integration.node.support import cli, running_node
from tests.waiting import wait_until


def cluster() -> str:
    return "t" + uuid.uuid4().hex[:8]


def http_get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


def test_two_nodes_on_one_etcd_answer_asks_and_show_the_truth(etcd_url: str) -> None:
    name = cluster()
    common = ["--etcd", etcd_url, "--cluster", name, "--app", "tests.integration.node.apps:echo"]
    with (
        running_node(*common, "--capability", "gpu", name="alpha") as alpha,
        running_node(*common, name="beta") as beta,
    ):
        flags = ["--etcd", etcd_url, "--cluster", name]
        for node in ("alpha", "beta"):
            done = cli("ask", f"echo-{node}", '{"n": 1}', *flags)
            assert done.returncode == 0, done.stderr
            assert json.loads(done.stdout)["echo"] == {"n": 1}
            assert json.loads(done.stdout)["node"] == node

        done = cli("ask", "echo", '"x"', "--capability", *flags)
        assert done.returncode == 0, done.stderr
        assert json.loads(done.stdout)["node"] in ("alpha", "beta")

        members = json.loads(cli("members", "--json", *flags).stdout)
        assert {m["node"]: m["address"] for m in members} == {
            "alpha": alpha.address,
            "beta": beta.address,
        }
        assert [m["capabilities"] for m in members if m["node"] == "alpha"] == ["gpu"]
        assert sum(m["leader"] for m in members) == 1

        actors = json.loads(cli("actors", "--json", *flags).stdout)
        assert {(a["name"], a["node"]) for a in actors} == {
            ("echo-alpha", "alpha"),
            ("echo-beta", "beta"),
        }
        routes = json.loads(cli("routes", "--json", *flags).stdout)
        assert {(r["capability"], r["actor"], r["node"]) for r in routes} == {
            ("echo", "echo-alpha", "alpha"),
            ("echo", "echo-beta", "beta"),
            ("taskmesh.workflows", "_workflows", "alpha"),  # every node's built-in coordinator
            ("taskmesh.workflows", "_workflows", "beta"),
        }
        leader = json.loads(cli("leader", "--json", *flags).stdout)["leader"]
        assert leader in ("alpha", "beta")
        assert cli("leader", *flags).stdout.strip() == leader

        table = cli("members", *flags).stdout
        assert "alpha" in table and "beta" in table and "NODE" in table
        assert "CPU%" in table and "MEM%" in table and "QUEUED" in table

        done = cli("ask", "echo", '"y"', "--capability", "--strategy", "least_loaded", *flags)
        assert done.returncode == 0, done.stderr
        assert json.loads(done.stdout)["node"] in ("alpha", "beta")
        hashed = [
            cli("ask", "echo", '"z"', "--capability", "--strategy", "consistent_hash",
                "--key", "order-7", *flags)
            for _ in range(2)
        ]  # fmt: skip
        assert all(h.returncode == 0 for h in hashed), [h.stderr for h in hashed]
        assert len({json.loads(h.stdout)["node"] for h in hashed}) == 1, "one key, one holder"

        # Round robin starts at a random holder in every new process (a CLI call
        # is one), so short-lived callers spread out: 24 fresh clients, one ask each.
        seen = set()
        for _ in range(24):
            with taskmesh.connect(etcd=etcd_url, cluster=name) as client:
                seen.add(client.capability("echo").ask("x", timeout=10)["node"])
        assert seen == {"alpha", "beta"}

        top = cli("top", "--iterations", "1", *flags)
        assert top.returncode == 0, top.stderr
        assert "2 nodes" in top.stdout and "alpha" in top.stdout


def test_a_remote_exception_and_an_unknown_name_are_one_line_errors(etcd_url: str) -> None:
    name = cluster()
    with running_node(
        "--etcd", etcd_url, "--cluster", name, "--app", "tests.integration.node.apps:echo",
        name="gamma",
    ):  # fmt: skip
        flags = ["--etcd", etcd_url, "--cluster", name]
        failed = cli("ask", "echo-gamma", '{"fail": "bad input"}', *flags)
        assert failed.returncode != 0
        assert failed.stderr.strip() == "taskmesh: error: remote ValueError: bad input"
        unknown = cli("ask", "nobody", "1", *flags)
        assert unknown.returncode != 0
        said = f"taskmesh: error: no actor named 'nobody' in cluster '{name}'\n"
        assert unknown.stderr == said
        assert cli("tell", "nobody", "1", *flags).stderr == said, "ask and tell say the same"
        no_holder = cli("ask", "nothing", "1", "--capability", *flags)
        assert no_holder.stderr == (
            f"taskmesh: error: no actor holds the capability 'nothing' in cluster '{name}'\n"
        )
        timeout = cli("ask", "echo-gamma", '{"sleep": 5}', "--timeout", "0.5", *flags)
        assert timeout.returncode != 0
        assert timeout.stderr.count("\n") == 1 and "0.5" in timeout.stderr
        told = cli("tell", "echo-gamma", '{"record": 2}', *flags)
        assert told.returncode == 0, told.stderr
        assert json.loads(cli("ask", "echo-gamma", '"told"', *flags).stdout) == [2]


def test_sigterm_drains_in_flight_asks_and_leaves_the_membership(etcd_url: str) -> None:
    name = cluster()
    flags = ["--etcd", etcd_url, "--cluster", name]
    with running_node(*flags, "--app", "tests.integration.node.apps:echo", name="delta") as node:
        results: list[object] = []

        def slow_ask() -> None:
            results.append(cli("ask", "echo-delta", '{"sleep": 2}', "--timeout", "30", *flags))

        asker = threading.Thread(target=slow_ask)
        asker.start()
        node.expect("app: sleeping")
        assert node.terminate() == 0
        asker.join(60)
        done = results[0]
        assert done.returncode == 0, done.stderr  # type: ignore[attr-defined]
        assert json.loads(done.stdout)["echo"] == {"sleep": 2}  # type: ignore[attr-defined]
        assert "taskmesh: stopped" in node.expect("stopped")
        assert json.loads(cli("members", "--json", *flags).stdout) == []


def test_metrics_healthz_and_readyz_answer_over_http(etcd_url: str) -> None:
    name = cluster()
    flags = ["--etcd", etcd_url, "--cluster", name]
    with running_node(
        *flags, "--metrics-port", "0", "--app", "tests.integration.node.apps:echo", name="eps"
    ) as node:
        assert http_get(node.metrics + "/healthz") == (200, "ok\n")
        assert http_get(node.metrics + "/readyz") == (200, "ready\n")
        assert cli("ask", "echo-eps", "1", *flags).returncode == 0
        cli("tell", "nobody-here", "1", *flags)
        status, body = http_get(node.metrics + "/metrics")
        assert status == 200
        assert "taskmesh_messages_in_total" in body
        assert 'taskmesh_mailbox_depth{actor="echo-eps"} 0.0' in body
        assert "taskmesh_members 1.0" in body
        assert "taskmesh_leader 1.0" in body
        assert "taskmesh_ready 1.0" in body
        # The serving side counts what it served: the CLI's ask, and the actor's intake.
        assert "taskmesh_handling_seconds_count 1.0" in body
        assert 'taskmesh_actor_messages_total{actor="echo-eps"} 1.0' in body
        assert "taskmesh_peers 0.0" in body
        # A peer counts as soon as it is a member, before any message went to it.
        with running_node(*flags, name="eps2"):
            wait_until(
                lambda: "taskmesh_peers 1.0" in http_get(node.metrics + "/metrics")[1],
                message="the second member counted as a peer",
            )


def test_the_embedded_etcd_starts_prints_its_url_and_is_joined(tmp_path: object) -> None:
    name = cluster()
    with running_node("--cluster", name, name="first") as first:
        assert first.etcd.startswith("http://127.0.0.1:")
        with running_node("--etcd", first.etcd, "--cluster", name, name="second"):
            members = json.loads(
                cli("members", "--json", "--etcd", first.etcd, "--cluster", name).stdout
            )
            assert sorted(m["node"] for m in members) == ["first", "second"]
        assert first.terminate() == 0
    refused = cli("members", "--etcd", first.etcd, "--cluster", name, timeout=60)
    assert refused.returncode != 0, "the embedded etcd stopped with its node"


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["ask", "x", "{not json", "--etcd", "http://127.0.0.1:9"], "not valid JSON"),
        (["tell", "x", "[1,", "--etcd", "http://127.0.0.1:9"], "not valid JSON"),
        (["ask", "x", "1"], "no etcd endpoint"),
        (["members", "--etcd", "localhost:1"], "must be a URL"),
        (["ask", "bad/name", "1", "--etcd", "http://127.0.0.1:9"], "invalid actor name"),
        (["members", "--bogus"], "No such option"),
        (["actors", "--etcd", "ftp://x"], "must be a URL"),
        (["routes", "--config", "/nonexistent/taskmesh.toml"], "does not exist"),
        (["leader", "--cluster", "a/b", "--etcd", "http://127.0.0.1:9"], "cluster"),
        (["top", "--interval", "soon"], "Invalid value for '--interval'"),
        (["tell", "x"], "Missing argument"),
        (["node", "--app", "nocolon"], "MODULE:FUNCTION"),
        (["node", "--app", "no_such_module_x:f"], "cannot import"),
        (["node", "--listen", "127.0.0.1:5"], "listen"),
        (["keygen"], "Missing argument"),
        (["ask", "x", "1", "--timeout", "0", "--etcd", "http://127.0.0.1:9"], "--timeout must be"),
        (["ask", "x", "1", "--capability", "--strategy", "broadcast"], "use tell"),
        (
            ["ask", "x", "1", "--strategy", "least_loaded", "--etcd", "http://127.0.0.1:9"],
            "--capability",
        ),
        (["frobnicate"], "No such command"),
    ],
)
def test_bad_input_gives_one_clear_line_and_a_nonzero_exit(args: list[str], needle: str) -> None:
    done = cli(*args)
    assert done.returncode != 0
    assert done.stderr.count("\n") == 1, done.stderr
    assert done.stderr.startswith("taskmesh: error: ")
    assert needle in done.stderr
    assert "Traceback" not in done.stderr


def test_an_unreachable_etcd_is_one_clear_line(tmp_path: object) -> None:
    done = cli("members", "--etcd", "http://127.0.0.1:9", timeout=120)
    assert done.returncode != 0
    assert done.stderr.count("\n") == 1 and "cannot reach etcd" in done.stderr


def test_a_failing_app_stops_the_node_with_a_clear_error(etcd_url: str) -> None:
    with running_node(
        "--etcd", etcd_url, "--cluster", cluster(), "--app", "tests.integration.node.apps:broken",
        name="zeta", ready=False,
    ) as node:  # fmt: skip
        assert node.proc.wait(60) != 0
        assert any("the app is broken" in line for line in node.stderr)
        assert not any("Traceback" in line for line in node.stderr)
