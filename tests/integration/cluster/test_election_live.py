"""Leader election and fencing against a real etcd, with real processes."""

from __future__ import annotations

import signal

import pytest

from taskmesh.cluster import EmbeddedEtcd
from taskmesh.errors import FencingError
from tests.etcd_fixtures import LEASE_TTL, SLACK, MemberFactory, child_member, wait_until

pytestmark = pytest.mark.integration


def test_exactly_one_member_leads_and_a_successor_takes_over(make_member: MemberFactory) -> None:
    a = make_member("a")
    b = make_member("b")
    c = make_member("c")
    members = (a, b, c)
    wait_until(lambda: sum(m.is_leader for m in members) == 1, 10, what="one leader")
    leader = next(m for m in members if m.is_leader)
    wait_until(lambda: all(m.leader == leader.node for m in members), 10, what="agreement")
    old_token = leader.election.token
    leader.stop()
    rest = [m for m in members if m is not leader]
    took = wait_until(lambda: sum(m.is_leader for m in rest) == 1, 10, what="new leader")
    assert took < SLACK, took  # a graceful stop revokes the lease at once
    new = next(m for m in rest if m.is_leader)
    assert new.election.token is not None and old_token is not None
    assert new.election.token > old_token
    new.election.guarded_put("/t/leader-owned", b"x")
    follower = next(m for m in rest if not m.is_leader)
    with pytest.raises(FencingError):
        follower.election.guarded_put("/t/leader-owned", b"y")


def test_a_frozen_leader_is_fenced_after_it_resumes(
    etcd: EmbeddedEtcd, cluster: str, make_member: MemberFactory
) -> None:
    with child_member(etcd=etcd.endpoint, cluster=cluster, node="old") as old:
        old.expect("ELECTED")
        successor = make_member("successor")
        assert not successor.is_leader
        old.signal(signal.SIGSTOP)
        took = wait_until(lambda: successor.is_leader, 15, what="successor elected")
        assert took < LEASE_TTL + SLACK, took
        old.signal(signal.SIGCONT)
        old.send("write")  # with the fence it captured when it was elected
        assert old.expect("WRITE") == "WRITE fenced"
        old.expect("DEMOTED")
        assert successor.is_leader


def test_a_killed_leader_is_replaced_within_a_few_seconds(
    etcd: EmbeddedEtcd, cluster: str, make_member: MemberFactory
) -> None:
    with child_member(etcd=etcd.endpoint, cluster=cluster, node="doomed") as doomed:
        doomed.expect("ELECTED")
        heir = make_member("heir")
        doomed.signal(signal.SIGKILL)
        took = wait_until(lambda: heir.is_leader, 10, what="heir elected")
        assert took < LEASE_TTL + SLACK, took
