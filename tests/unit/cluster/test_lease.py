"""LeaseKeeper's state machine, against a scripted etcd client and a fake clock."""

from __future__ import annotations

import threading
import time
from typing import Any

from taskmesh.cluster.etcd import LeaseKeeper
from taskmesh.errors import ClusterError, EtcdUnavailable
from tests.waiting import wait_until


class ScriptedEtcd:
    """Grants leases 1, 2, ...; refresh answers from ``ttl_reply`` or raises when down."""

    def __init__(self) -> None:
        self.next_id = 0
        self.ttl_reply = 3
        self.down = False
        self.revoked: list[int] = []
        self.lock = threading.Lock()
        self.reachable: bool | None = None  # as EtcdClient: None before the first call

    def grant(self, ttl: int, **_: Any) -> int:
        if self.down:
            raise EtcdUnavailable("down")
        with self.lock:
            self.next_id += 1
            return self.next_id

    def refresh(self, lease: int, **_: Any) -> int:
        if self.down:
            raise EtcdUnavailable("down")
        return self.ttl_reply

    def revoke(self, lease: int) -> None:
        if self.down:
            raise EtcdUnavailable("down")
        self.revoked.append(lease)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def wait(predicate: Any, timeout: float = 5.0) -> None:
    wait_until(predicate, timeout, interval=0.01)


def make(etcd: ScriptedEtcd, clock: Clock) -> tuple[LeaseKeeper, list[int], list[int]]:
    keeper = LeaseKeeper(etcd, 3, retry_interval=0.01, clock=clock)  # type: ignore[arg-type]
    acquired: list[int] = []
    lost: list[int] = []
    keeper.on_acquired(acquired.append)
    keeper.on_lost(lost.append)
    return keeper, acquired, lost


def test_a_refresh_answered_with_ttl_zero_means_the_lease_is_lost() -> None:
    etcd, clock = ScriptedEtcd(), Clock()
    keeper, acquired, lost = make(etcd, clock)
    keeper.start()
    try:
        assert keeper.wait_acquired(5) == 1
        etcd.ttl_reply = 0  # etcd's answer for an expired lease: no error, TTL 0
        wait(lambda: lost == [1])
        etcd.ttl_reply = 3
        wait(lambda: keeper.lease_id == 2)
        assert acquired == [1, 2]
        wait(lambda: 1 in etcd.revoked)  # the old lease is revoked after re-registering
    finally:
        keeper.stop()


def test_an_unreachable_etcd_loses_the_lease_at_the_local_deadline() -> None:
    etcd, clock = ScriptedEtcd(), Clock()
    keeper, _, lost = make(etcd, clock)
    keeper.start()
    try:
        keeper.wait_acquired(5)
        etcd.down = True
        clock.now += 2.5  # still within the TTL: keep the lease
        time.sleep(0.1)
        assert lost == [] and keeper.lease_id == 1
        clock.now += 1.0  # past it: etcd may have expired the lease, so give it up
        wait(lambda: lost == [1])
        assert keeper.lease_id is None
        etcd.down = False
        wait(lambda: keeper.lease_id == 2)
    finally:
        keeper.stop()


def test_a_failing_acquired_hook_is_retried_until_it_succeeds() -> None:
    etcd, clock = ScriptedEtcd(), Clock()
    keeper = LeaseKeeper(etcd, 3, retry_interval=0.01, clock=clock)  # type: ignore[arg-type]
    calls: list[int] = []

    def flaky(lease: int) -> None:
        calls.append(lease)
        if len(calls) < 3:
            raise ClusterError("etcd hiccup")

    keeper.on_acquired(flaky)
    keeper.start()
    try:
        assert keeper.wait_acquired(5) == 1
        assert calls == [1, 1, 1]
    finally:
        keeper.stop()


def test_keys_that_vanish_while_the_hooks_put_them_back_are_put_back_again() -> None:
    # The hooks re-registering after one deletion may run before a second
    # deletion (another prefix): that one must make them run once more.
    etcd, clock = ScriptedEtcd(), Clock()
    keeper = LeaseKeeper(etcd, 3, retry_interval=0.01, clock=clock)  # type: ignore[arg-type]
    runs: list[int] = []
    inside = threading.Event()
    go_on = threading.Event()

    def hook(lease: int) -> None:
        runs.append(lease)
        if len(runs) == 2:  # the re-registration after the first deletion
            inside.set()
            go_on.wait(5)

    keeper.on_acquired(hook)
    keeper.start()
    try:
        assert keeper.wait_acquired(5) == 1
        keeper.republish()  # the member record vanished
        assert inside.wait(5)
        keeper.republish()  # the names vanished too, while the hooks ran
        go_on.set()
        wait(lambda: len(runs) == 3)
        assert runs == [1, 1, 1]
        assert keeper.wait_acquired(5) == 1
    finally:
        go_on.set()
        keeper.stop()
