"""An async actor's cluster name is released off the event loop.

The event loop runs every async actor of a node and must never wait for
etcd: an ended async actor's name and routes go to the releaser thread.
These tests use a real etcd, frozen with SIGSTOP where etcd must not answer.
"""

from __future__ import annotations

import os
import signal
import threading
from typing import Any

import pytest

import taskmesh
from taskmesh.cluster import EmbeddedEtcd
from taskmesh.cluster.etcd import EtcdClient
from tests.etcd_fixtures import unique_cluster, wait_until

pytestmark = pytest.mark.integration


class Light(taskmesh.Actor):
    capabilities = ("light",)

    async def receive(self, message: Any) -> Any:
        return message


def test_a_stop_while_etcd_is_frozen_leaves_the_event_loop_running(
    private_etcd: EmbeddedEtcd,
) -> None:
    cluster = unique_cluster()
    root = f"/taskmesh/{cluster}/"
    with (
        taskmesh.Node(cluster=cluster, etcd=private_etcd.endpoint, name="n1") as node,
        EtcdClient(private_etcd.endpoint) as probe_etcd,
    ):
        lights = node.spawn_many(Light, ["light-0", "light-1"])
        probe = node.spawn(Light, name="probe")
        assert probe_etcd.get(root + "names/light-0") is not None
        pid = private_etcd.pid
        assert pid is not None
        os.kill(pid, signal.SIGSTOP)
        try:
            stopper = threading.Thread(target=lights[0].stop)
            stopper.start()
            registrar = node._registrar
            wait_until(
                lambda: "light-0" in registrar._pending or "light-0" in registrar._in_flight,
                30,
                what="the release queued for the releaser thread",
            )
            # The loop answers while the release still waits for etcd.
            assert probe.ask("still here", timeout=30) == "still here"
            assert lights[1].ask("me too", timeout=30) == "me too"
            assert "light-0" in registrar._pending or "light-0" in registrar._in_flight
        finally:
            os.kill(pid, signal.SIGCONT)
        stopper.join(30)
        assert not stopper.is_alive()
        # Once etcd answers again, the releaser gets the name and route out.
        wait_until(
            lambda: probe_etcd.get(root + "names/light-0") is None,
            30,
            what="light-0's name released after the outage",
        )
        routes = [kv.key for kv in probe_etcd.get_prefix(root + "routes/light/")[0]]
        assert not [key for key in routes if key.endswith("/light-0")]
        assert probe_etcd.get(root + "names/light-1") is not None


def test_a_stopped_async_actors_name_is_free_at_once_here_and_elsewhere(
    private_etcd: EmbeddedEtcd,
) -> None:
    cluster = unique_cluster()
    root = f"/taskmesh/{cluster}/"
    with (
        taskmesh.Node(cluster=cluster, etcd=private_etcd.endpoint, name="a") as a,
        taskmesh.Node(cluster=cluster, etcd=private_etcd.endpoint, name="b") as b,
        EtcdClient(private_etcd.endpoint) as probe_etcd,
    ):
        # ref.stop() returns once the name is free in the cluster: another
        # node may take it straight away.
        for i in range(20):
            ref = a.spawn(Light, name=f"move-{i}")
            assert ref.stop()
            b.spawn(Light, name=f"move-{i}")
        # Spawned again here right after a stop: the queued release must not
        # delete the new claim (a spawn waits for a release in flight).
        for i in range(20):
            ref = a.spawn(Light, name=f"again-{i}")
            a.system.stop_actor(f"again-{i}", 0)
            wait_until(lambda i=i: f"again-{i}" not in a.system.names(), 30)
            a.spawn(Light, name=f"again-{i}")
        assert a._registrar.settle("again-19", 30)
        for i in range(20):
            assert probe_etcd.get(root + f"names/again-{i}") is not None, f"again-{i}"
            assert probe_etcd.get(root + f"names/move-{i}") is not None, f"move-{i}"
        with taskmesh.connect(etcd=private_etcd.endpoint, cluster=cluster) as client:
            wait_until(lambda: client.resolve("move-19") is not None, 30)
            assert client.ref("move-19").ask("hi", timeout=30) == "hi"
            assert client.ref("again-19").ask("hi", timeout=30) == "hi"
