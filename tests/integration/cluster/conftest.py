"""Fixtures for cluster integration tests: one real etcd per session, members per test."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from taskmesh.cluster import ClusterMember, ClusterSettings, EmbeddedEtcd
from tests.etcd_fixtures import MemberFactory, unique_cluster


@pytest.fixture(scope="session")
def etcd() -> Iterator[EmbeddedEtcd]:
    """One etcd member for the session (tests use their own cluster names).

    A missing etcd binary raises here, so the tests fail rather than skip.
    """
    server = EmbeddedEtcd()
    server.start()
    try:
        yield server
    finally:
        server.close()


@pytest.fixture
def private_etcd() -> Iterator[EmbeddedEtcd]:
    """An etcd member of this test's own, for tests that stop or restart it."""
    server = EmbeddedEtcd()
    server.start()
    try:
        yield server
    finally:
        server.close()


@pytest.fixture
def cluster() -> str:
    """A fresh cluster name."""
    return unique_cluster()


@pytest.fixture
def make_member(etcd: EmbeddedEtcd, cluster: str) -> Iterator[MemberFactory]:
    """Start in-process members of ``cluster``; all are stopped after the test."""
    started: list[ClusterMember] = []

    def make(node: str, **kwargs: Any) -> ClusterMember:
        kwargs.setdefault("etcd", etcd.endpoint)
        kwargs.setdefault("cluster", cluster)
        kwargs.setdefault("address", f"tcp://127.0.0.1:1/{node}")
        hook_names = ("singleton_start", "singleton_stop", "mailbox_total")
        hooks = {k: kwargs.pop(k) for k in hook_names if k in kwargs}
        member = ClusterMember(ClusterSettings(node=node, **kwargs), **hooks)
        started.append(member)
        return member.start()

    try:
        yield make
    finally:
        for member in reversed(started):
            member.stop()
