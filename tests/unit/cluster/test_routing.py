"""The consistent-hash ring behind the ``consistent_hash`` strategy."""

from __future__ import annotations

from taskmesh.cluster.routing import Route, _Ring

ROUTES = [Route(f"n{i}", "worker", f"tcp://n{i}") for i in range(4)]
KEYS = [f"order-{i}" for i in range(2000)]


def test_the_same_key_always_reaches_the_same_route() -> None:
    ring = _Ring(ROUTES)
    assert [ring.pick(k) for k in KEYS] == [_Ring(reversed(ROUTES)).pick(k) for k in KEYS]


def test_keys_spread_over_every_route() -> None:
    ring = _Ring(ROUTES)
    counts = {r: 0 for r in ROUTES}
    for key in KEYS:
        route = ring.pick(key)
        assert route is not None
        counts[route] += 1
    assert min(counts.values()) > len(KEYS) / len(ROUTES) / 2


def test_only_the_keys_of_a_departed_route_move() -> None:
    before = _Ring(ROUTES)
    after = _Ring(ROUTES[:-1])
    for key in KEYS:
        was = before.pick(key)
        if was != ROUTES[-1]:
            assert after.pick(key) == was


def test_an_empty_ring_picks_nothing() -> None:
    assert _Ring([]).pick("k") is None


def test_a_skipped_node_sends_its_keys_to_the_next_route_on_the_ring() -> None:
    ring = _Ring(ROUTES)
    smaller = _Ring(ROUTES[:-1])
    for key in KEYS:
        assert ring.pick(key, skip={"n3"}) == smaller.pick(key)
    assert ring.pick("k", skip={r.node for r in ROUTES}) is None
