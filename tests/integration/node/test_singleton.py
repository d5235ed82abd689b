"""A cluster singleton runs once and is re-placed when its node is killed."""

from __future__ import annotations

import signal
import uuid
from typing import Any

from taskmesh.client import Client, connect
from taskmesh.errors import TaskmeshError
from tests.integration.node.support import running_node
from tests.waiting import wait_until


def test_a_singleton_runs_once_and_moves_when_its_node_dies(etcd_url: str) -> None:
    cluster = "t" + uuid.uuid4().hex[:8]
    flags = ["--etcd", etcd_url, "--cluster", cluster, "--capability", "timekeeper"]
    app = ["--app", "tests.integration.node.apps:clock"]
    with (
        running_node(*flags, *app, name="one") as one,
        running_node(*flags, *app, name="two") as two,
        connect(etcd=etcd_url, cluster=cluster) as client,
    ):
        first = wait_until(lambda: _ask(client), timeout=60, message="the singleton to run")
        assert first["node"] in ("one", "two")
        assert _ask(client)["node"] == first["node"]
        assert client.actors()["clock"][0] == first["node"], "one instance, on the placed node"
        victim = one if first["node"] == "one" else two
        victim.proc.send_signal(signal.SIGKILL)
        victim.proc.wait(30)
        moved = wait_until(
            lambda: (r := _ask(client)) and r["node"] != first["node"] and r,
            timeout=60,
            message="the singleton to move",
        )
        assert moved["ticks"] == 1, "the new instance starts with fresh state"


def _ask(client: Client) -> dict[str, Any] | None:
    try:
        return client.ask("clock", "tick", timeout=2)  # type: ignore[no-any-return]
    except TaskmeshError:  # not placed yet, or its node just died
        return None
