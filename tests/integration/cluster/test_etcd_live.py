"""The etcd adapter against a real etcd: errors, failover, leases, resilient watches."""

from __future__ import annotations

import logging
import threading

import pytest

from taskmesh.cluster import EmbeddedEtcd
from taskmesh.cluster.embedded import free_port
from taskmesh.cluster.etcd import (
    Compare,
    EtcdClient,
    KeyValue,
    LeaseKeeper,
    PrefixWatch,
    Put,
    WatchEvent,
)
from taskmesh.errors import EtcdUnavailable
from tests.etcd_fixtures import TcpProxy, wait_until

pytestmark = pytest.mark.integration


class Mirror:
    """A cache fed by a PrefixWatch, as the cluster modules keep one."""

    def __init__(self) -> None:
        self.data: dict[str, bytes] = {}
        self.lock = threading.Lock()

    def reset(self, kvs: list[KeyValue], revision: int) -> None:
        with self.lock:
            self.data = {kv.key: kv.value for kv in kvs}

    def event(self, event: WatchEvent) -> None:
        with self.lock:
            if event.kind == "put":
                self.data[event.kv.key] = event.kv.value
            else:
                self.data.pop(event.kv.key, None)

    def snapshot(self) -> dict[str, bytes]:
        with self.lock:
            return dict(self.data)


def test_a_transaction_applies_only_when_its_guard_holds(etcd: EmbeddedEtcd) -> None:
    client = EtcdClient(etcd.endpoint)
    try:
        assert client.create("/t/txn/a", b"1") is None
        held = client.create("/t/txn/a", b"2")
        assert held is not None and held.value == b"1"
        ok = client.txn([Compare("/t/txn/a", "value", "==", b"1")], [Put("/t/txn/a", b"3")])
        assert ok.succeeded
        stale = client.txn([Compare("/t/txn/a", "value", "==", b"1")], [Put("/t/txn/a", b"4")])
        assert not stale.succeeded
        kv = client.get("/t/txn/a")
        assert kv is not None and kv.value == b"3"
    finally:
        client.close()


def test_an_unreachable_etcd_raises_etcd_unavailable() -> None:
    client = EtcdClient(f"http://127.0.0.1:{free_port()}", timeout=1.0)
    try:
        with pytest.raises(EtcdUnavailable):
            client.get("/x")
    finally:
        client.close()


def test_a_client_fails_over_to_the_next_endpoint(etcd: EmbeddedEtcd) -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    client = EtcdClient([dead, etcd.endpoint], timeout=1.0)
    try:
        for i in range(5):  # whichever endpoint it starts on, every call succeeds
            client.put(f"/t/failover/{i}", b"x")
    finally:
        client.close()


def test_refreshing_an_expired_lease_reports_ttl_zero(etcd: EmbeddedEtcd) -> None:
    client = EtcdClient(etcd.endpoint)
    try:
        lease = client.grant(5)
        assert client.refresh(lease) > 0
        client.revoke(lease)
        assert client.refresh(lease) == 0
    finally:
        client.close()


def test_a_lease_lost_on_the_server_is_noticed_and_replaced(etcd: EmbeddedEtcd) -> None:
    client = EtcdClient(etcd.endpoint)
    keeper = LeaseKeeper(client, 3)
    lost: list[int] = []
    keeper.on_acquired(lambda lease: client.put("/t/keeper/me", b"x", lease=lease))
    keeper.on_lost(lost.append)
    keeper.start()
    try:
        first = keeper.wait_acquired(10)
        client.revoke(first)  # as if etcd had expired it
        wait_until(lambda: lost == [first], 5, what="lease loss noticed")
        second = keeper.wait_acquired(10)
        assert second != first
        kv = client.get("/t/keeper/me")
        assert kv is not None and kv.lease == second
    finally:
        keeper.stop()
        client.close()


def test_a_watch_resumes_after_etcd_restarts(private_etcd: EmbeddedEtcd) -> None:
    client = EtcdClient(private_etcd.endpoint)
    mirror = Mirror()
    watch = PrefixWatch(client, "/t/w/", on_reset=mirror.reset, on_event=mirror.event)
    try:
        client.put("/t/w/before", b"1")
        watch.start(wait=10)
        private_etcd.stop()
        private_etcd.start()
        client.put("/t/w/after", b"2")
        client.delete("/t/w/before")
        wait_until(lambda: mirror.snapshot() == {"/t/w/after": b"2"}, 15, what="watch resumed")
        assert watch.resets == 1  # resumed from its revision, no re-list needed
    finally:
        watch.stop()
        client.close()


def test_a_watch_whose_client_is_closed_under_it_ends_quietly(
    private_etcd: EmbeddedEtcd, caplog: pytest.LogCaptureFixture
) -> None:
    # A stop that closes the client before its watches: the watch tries to
    # subscribe again, and no thread may die with an unhandled exception on
    # the way (the suite turns those into failures).
    caplog.set_level(logging.DEBUG, logger="taskmesh.cluster.watch")

    def retries() -> int:
        return sum("(re)subscribe failed" in r.getMessage() for r in caplog.records)

    for _ in range(5):
        client = EtcdClient(private_etcd.endpoint)
        states: list[bool] = []
        watch = PrefixWatch(
            client, "/t/c/", on_reset=lambda kvs, rev: None, on_event=lambda e: None,
            on_state=states.append, retry_interval=0.02,
        )  # fmt: skip
        try:
            watch.start(wait=10)
            wait_until(lambda s=states: s == [True], 15, what="the watch to subscribe")
            before = retries()
            client.close()
            wait_until(lambda n=before: retries() >= n + 3, 15, what="attempts to subscribe again")
        finally:
            watch.stop()
            client.close()


def test_a_watch_relists_when_its_revision_was_compacted(etcd: EmbeddedEtcd) -> None:
    proxy = TcpProxy(int(etcd.endpoint.rsplit(":", 1)[1]))
    direct = EtcdClient(etcd.endpoint)
    client = EtcdClient(proxy.endpoint, timeout=1.0)
    mirror = Mirror()
    watch = PrefixWatch(client, "/t/c/", on_reset=mirror.reset, on_event=mirror.event)
    try:
        direct.put("/t/c/gone", b"1")
        watch.start(wait=10)
        proxy.cut()  # the watcher is cut off while history is compacted away
        direct.put("/t/c/new", b"2")
        direct.delete("/t/c/gone")
        direct.compact(direct.put("/t/c/newer", b"3"))
        proxy.restore()
        want = {"/t/c/new": b"2", "/t/c/newer": b"3"}
        wait_until(lambda: mirror.snapshot() == want, 20, what="cache after compaction")
        assert watch.resets == 2
        direct.put("/t/c/later", b"4")
        wait_until(lambda: "/t/c/later" in mirror.snapshot(), 10, what="events after re-list")
    finally:
        watch.stop()
        client.close()
        direct.close()
        proxy.close()
