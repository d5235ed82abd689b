"""Singleton placement against a real etcd: placed once, re-placed when its node dies."""

from __future__ import annotations

import signal

import pytest

from taskmesh.cluster import EmbeddedEtcd
from tests.etcd_fixtures import LEASE_TTL, SLACK, MemberFactory, child_member, wait_until

pytestmark = pytest.mark.integration


def test_a_singleton_is_replaced_after_its_node_dies(
    etcd: EmbeddedEtcd, cluster: str, make_member: MemberFactory
) -> None:
    boss = make_member("boss")
    wait_until(lambda: boss.is_leader, 10, what="boss leads")
    with child_member(
        etcd=etcd.endpoint, cluster=cluster, node="first", labels=["camera"]
    ) as first:
        boss.declare_singleton("dock-scanner", "camera")
        first.expect("START dock-scanner")
        started: list[str] = []
        standby = make_member(
            "standby",
            capabilities=frozenset({"camera"}),
            singleton_start=lambda n, c: started.append(n),
        )
        wait_until(lambda: boss.singletons()["dock-scanner"].node == "first", 10)
        assert started == []  # one instance only
        first.signal(signal.SIGKILL)
        took = wait_until(lambda: started == ["dock-scanner"], 15, what="re-placed on standby")
        assert took < LEASE_TTL + SLACK, took
        assert standby.placement.running() == {"dock-scanner"}
        wait_until(lambda: boss.singletons()["dock-scanner"].node == "standby", 10)


def test_a_singleton_waits_for_a_node_with_its_capability(make_member: MemberFactory) -> None:
    boss = make_member("boss")
    boss.declare_singleton("gpu-job", "gpu")
    wait_until(lambda: "gpu-job" in boss.singletons(), 10)
    assert boss.singletons()["gpu-job"].node == ""
    stopped: list[str] = []
    worker = make_member("worker", capabilities=frozenset({"gpu"}), singleton_stop=stopped.append)
    wait_until(lambda: worker.placement.running() == {"gpu-job"}, 10, what="placed on worker")
    worker.stop()
    assert stopped == ["gpu-job"]
