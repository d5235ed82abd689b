"""Actor registration against a real etcd: batched, patient, and clean when it fails."""

from __future__ import annotations

import threading

import pytest

from taskmesh.cluster import ClusterMember, ClusterSettings, EmbeddedEtcd
from taskmesh.cluster.etcd import EtcdClient
from taskmesh.errors import EtcdUnavailable, NameTaken
from tests.etcd_fixtures import MemberFactory, unique_cluster, wait_until

pytestmark = pytest.mark.integration


def test_many_names_take_one_transaction_per_64_and_keep_create_if_absent(
    etcd: EmbeddedEtcd, make_member: MemberFactory
) -> None:
    a = make_member("a")
    b = make_member("b")
    b.register_actor("n-0500")
    with EtcdClient(etcd.endpoint) as probe:
        before = probe.revision()
        names = [f"n-{i:04d}" for i in range(1000)]
        with pytest.raises(NameTaken, match="'n-0500'"):
            a.register_many(names, capabilities=["sensor"])
        # All or nothing: a holds none of them, b still holds its own.
        wait_until(lambda: set(b.names.all()) == {"n-0500"}, 10, what="a's claims withdrawn")
        assert b.lookup("n-0500").node == "b"  # type: ignore[union-attr]
        wait_until(lambda: a.routing.routes("sensor") == [], 10, what="a's routes withdrawn")

        first = probe.revision()
        names.remove("n-0500")
        records = a.register_many(names, capabilities=["sensor"])
        # the revisions of this cluster's keys written since (other tests may
        # write to the same etcd meanwhile: the global revision counts theirs)
        root = f"/taskmesh/{a.settings.cluster}/"
        kvs = [kv for part in ("names/", "routes/") for kv in probe.get_prefix(root + part)[0]]
        used = len({kv.mod_revision for kv in kvs if kv.mod_revision > first})
    assert {r.node for r in records} == {"a"} and len(records) == 999
    # One transaction (one revision) per 64 names, with their routes.
    assert used <= 999 // 64 + 1, used
    wait_until(lambda: len(b.names.all()) == 1000, 30, what="b sees every name")
    # names and routes are two watches: b may see one before the other
    wait_until(lambda: len(b.routing.routes("sensor")) == 999, 30, what="b sees every route")
    assert first > before
    # Registering one of them again now costs no round trip.
    with EtcdClient(etcd.endpoint) as probe:
        again = probe.revision()
        a.register_actor("n-0001", capabilities=["sensor"])
        assert probe.revision() == again


def test_concurrent_registrations_share_transactions(make_member: MemberFactory) -> None:
    a = make_member("a")
    start = threading.Barrier(8)
    errors: list[BaseException] = []

    def spawner(k: int) -> None:
        try:
            start.wait()
            for i in range(40):
                a.register_actor(f"c{k}-{i}", capabilities=["work"])
        except BaseException as exc:
            errors.append(exc)

    batches = a.registrar.batches
    threads = [threading.Thread(target=spawner, args=(k,)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors
    assert len(a.names.owned()) == 320
    assert a.registrar.batches - batches < 320, "concurrent claims did not share transactions"


def test_a_registration_waits_for_a_new_lease_when_its_lease_is_gone(
    etcd: EmbeddedEtcd, make_member: MemberFactory
) -> None:
    a = make_member("a")
    a.register_actor("before", capabilities=["cap"])
    lease = a.lease.lease_id
    assert lease is not None
    with EtcdClient(etcd.endpoint) as probe:
        probe.revoke(lease)  # what a swamped start-up or an expiry does to it
        a.register_actor("after", capabilities=["cap"])  # waits for the next lease
        assert a.lease.lease_id not in (None, lease)
        for name in ("before", "after"):
            wait_until(lambda n=name: probe.get(a.keys.name(n)) is not None, 10, what=name)
        # the routes come through the watch, after the names are in etcd
        wait_until(
            lambda: {r.actor for r in a.routing.routes("cap")} == {"before", "after"},
            10, what="both routes",
        )  # fmt: skip


def test_a_registration_while_etcd_is_down_fails_clearly_and_leaves_nothing(
    private_etcd: EmbeddedEtcd,
) -> None:
    settings = ClusterSettings(
        etcd=private_etcd.endpoint, cluster=unique_cluster(), node="a", claim_timeout=2.0
    )
    with ClusterMember(settings) as a:
        private_etcd.stop()
        with pytest.raises(EtcdUnavailable, match="nothing was registered"):
            a.register_actor("during", capabilities=["cap"])
        private_etcd.start()
        wait_until(lambda: a.registered, 30, what="a registered again")
        a.register_actor("after")
        with EtcdClient(private_etcd.endpoint) as probe:
            assert probe.get(a.keys.name("during")) is None
            assert probe.get(a.keys.route("cap", "a", "during")) is None
            assert probe.get(a.keys.name("after")) is not None
        assert "during" not in a.names.owned()
