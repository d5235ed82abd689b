"""Edge links (150 ms +- 50 ms each way, resets, a 3 s black hole) with the edge profile:
no ask with retries fails and leadership never flaps."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.edge_links import EdgeCluster, Traffic

pytestmark = pytest.mark.integration


@pytest.fixture
def edge() -> Iterator[EdgeCluster]:
    cluster = EdgeCluster(delay=0.15, jitter=0.05, profile="edge")
    try:
        yield cluster.start()
    finally:
        cluster.close()


def test_slow_flaky_links_fail_no_ask_with_retries_and_do_not_flap_the_leader(
    edge: EdgeCluster,
) -> None:
    steady, faulty = Traffic(), Traffic()
    edge.ask_for(6.0, steady)
    assert steady.latencies and not steady.failures, steady.failures
    elected = edge.leaders_elected()
    assert elected == 1

    # Each link resets every 10 s (the links at different moments), and the links
    # of e1 and of etcd fall into a 3 s black hole once.
    links = [*edge.links.values(), edge.etcd_link]
    for i, link in enumerate(links):
        link.reset_every(10.0, first=1.0 + 2.5 * i)
    edge.ask_for(5.0, faulty)
    edge.links["e1"].black_hole(3.0)
    edge.etcd_link.black_hole(3.0)
    edge.ask_for(7.0, faulty)
    assert sum(link.resets for link in links) >= len(links)

    assert faulty.latencies and not faulty.failures, faulty.failures
    assert edge.leaders_elected() == elected, "leadership flapped"
    assert all(node.proc.poll() is None for node in edge.nodes.values())
    members = edge.client.members()
    assert set(members) == set(edge.nodes)
