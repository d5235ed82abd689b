"""Both state stores against real servers: a real etcd and a real PostgreSQL."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator

import pytest

from taskmesh.cluster.etcd import EtcdClient
from taskmesh.entities import EtcdStore, PostgresStore, StateStore, StoreContext
from taskmesh.entities.layout import EntityKeys
from taskmesh.entities.store import encode_state
from taskmesh.errors import StaleActivation, StateTooLarge
from tests.etcd_fixtures import unique_cluster
from tests.postgres import postgres_server

pytestmark = pytest.mark.integration

Grant = Callable[[int], int]
"""``grant(shard)``: make this test the shard's new owner; returns its token."""


@pytest.fixture(scope="module")
def pg_dsn() -> Iterator[str]:
    with postgres_server() as dsn:
        yield dsn


@pytest.fixture(params=["etcd", "postgres"])
def store(
    request: pytest.FixtureRequest, etcd_url: str, pg_dsn: str
) -> Iterator[tuple[StateStore, Grant]]:
    client = EtcdClient(etcd_url)
    cluster = unique_cluster()
    context = StoreContext(cluster, client, EntityKeys(cluster))
    try:
        if request.param == "etcd":
            keys = context.keys
            etcd_store = EtcdStore()
            etcd_store.bind(context)

            def grant_etcd(shard: int) -> int:
                # The leader's assignment: the key's revision is the token.
                key = keys.shard("device", shard)
                client.delete(key)
                return client.put(key, b'{"node": "test"}')

            yield etcd_store, grant_etcd
        else:
            pg_store = PostgresStore(pg_dsn, pool_size=2)
            pg_store.bind(context)
            tokens = itertools.count(100)

            def grant_pg(shard: int) -> int:
                return next(tokens)

            try:
                yield pg_store, grant_pg
            finally:
                pg_store.close()
    finally:
        client.close()


def test_a_save_is_loaded_back_and_a_none_state_deletes_it(
    store: tuple[StateStore, Grant],
) -> None:
    states, grant = store
    token = grant(3)
    states.acquire("device", 3, token)
    assert states.load("device", "dock-3") is None
    data = encode_state({"seen": [1, 2], "name": "dock ☃"}, states.max_state_size)
    states.save("device", 3, "dock-3", data, token)
    assert states.load("device", "dock-3") == data
    states.save("device", 3, "dock-3", None, token)
    assert states.load("device", "dock-3") is None


def test_an_owner_that_lost_its_shard_cannot_overwrite_the_new_owners_state(
    store: tuple[StateStore, Grant],
) -> None:
    states, grant = store
    old = grant(5)
    states.acquire("device", 5, old)
    states.save("device", 5, "a", b"\x01", old)
    new = grant(5)
    states.acquire("device", 5, new)
    with pytest.raises(StaleActivation):
        states.save("device", 5, "a", b"\x02", old)
    assert states.load("device", "a") == b"\x01"
    states.save("device", 5, "a", b"\x03", new)
    assert states.load("device", "a") == b"\x03"
    other = grant(6)  # other shards are fenced apart
    states.acquire("device", 6, other)
    states.save("device", 6, "b", b"\x04", other)


def test_a_state_over_the_stores_limit_is_refused_before_writing() -> None:
    with pytest.raises(StateTooLarge):
        encode_state("x" * (EtcdStore().max_state_size + 1), EtcdStore().max_state_size)


def test_postgres_refuses_to_fence_a_shard_back_to_an_older_owner(pg_dsn: str) -> None:
    states = PostgresStore(pg_dsn)
    cluster = unique_cluster()
    try:
        states.bind(StoreContext(cluster, None, EntityKeys(cluster)))  # type: ignore[arg-type]
        states.acquire("device", 1, 10)
        states.acquire("device", 1, 10)  # the same owner again: fine
        with pytest.raises(StaleActivation):
            states.acquire("device", 1, 9)
        states.save("device", 1, "x", b"\x05", 10)
        assert states.load("device", "x") == b"\x05"
    finally:
        states.close()
