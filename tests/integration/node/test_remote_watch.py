"""Death watch across real nodes: a watcher on one node hears why actors on
others ended (stopped, failed, their node killed or stopped), not after an
unwatch, once across a restart of the target, and still after its own."""

from __future__ import annotations

import signal
import uuid
from contextlib import ExitStack
from functools import partial
from typing import Any

import taskmesh
from taskmesh.deathwatch import WATCH_ACTOR
from tests.integration.node.support import NodeProcess
from tests.waiting import wait_until

APPS = "tests.integration.node.watch_apps"


def test_terminated_comes_across_nodes_for_every_way_an_actor_ends(etcd_url: str) -> None:
    cluster = "t" + uuid.uuid4().hex[:8]
    flags = ["--etcd", etcd_url, "--cluster", cluster, "--lease-ttl", "2"]
    with ExitStack() as stack:
        nodes = {}
        for name, app in (("a", "watcher"), ("b", "targets"), ("c", "targets")):
            nodes[name] = NodeProcess(*flags, "--app", f"{APPS}:{app}", name=name)
            stack.callback(nodes[name].close)
        for node in nodes.values():
            node.wait_ready()
        client = stack.enter_context(taskmesh.connect(etcd=etcd_url, cluster=cluster))
        watcher = client.ref("watcher")

        def seen() -> list[tuple[str, str]]:
            return [tuple(pair) for pair in watcher.ask("seen")]  # type: ignore[misc]

        def watch(*names: str) -> None:
            """Watch, and wait until each target's node holds the watch."""
            for name in names:
                watcher.ask(["watch", name])
            for name in names:
                wait_until(partial(held_by_a, name), timeout=20.0)

        def held_by_a(name: str) -> bool:
            node = name.rsplit("-", 1)[1]
            watchdog = client.locator.ref(node, nodes[node].address, WATCH_ACTOR)
            request: dict[str, Any] = {"op": "watchers", "name": name, "node": "test"}
            return bool(watchdog.ask(request, timeout=5.0) == ["a"])

        watch("stop-b", "fail-b", "unwatched-b", "restart-b")
        watcher.ask(["watch", "nobody"])
        watcher.ask(["unwatch", "unwatched-b"])
        client.ask("unwatched-b", "stop")
        client.tell("restart-b", "fail")  # restarted in place: not an end
        client.tell("fail-b", "fail")  # temporary: a failure ends it
        client.ask("stop-b", "stop")
        assert client.ask("restart-b", "ping") == "ping"
        client.ask("restart-b", "stop")
        wait_until(lambda: len(seen()) >= 4, timeout=20.0)
        assert sorted(seen()) == [
            ("fail-b", "failed"), ("nobody", "not_found"),
            ("restart-b", "stopped"), ("stop-b", "stopped"),
        ]  # fmt: skip

        # the watcher restarts in place: its watches stay, as local ones do
        watch("after-restart-b")
        client.tell("watcher", "fail")
        wait_until(lambda: seen() == [], timeout=20.0)  # a fresh instance
        client.ask("after-restart-b", "stop")
        wait_until(lambda: seen() == [("after-restart-b", "stopped")], timeout=20.0)

        # c is killed, b leaves: their actors' watchers hear of it
        watch("stop-c", "leave-b")
        nodes["c"].proc.send_signal(signal.SIGKILL)
        nodes["b"].proc.send_signal(signal.SIGTERM)
        wait_until(lambda: len(seen()) == 3, timeout=20.0)
        ended = dict(seen())
        assert ended["stop-c"] == "node_left"
        assert ended["leave-b"] in ("node_left", "stopped")
        assert nodes["b"].proc.wait(30) == 0
