"""Three ``taskmesh node`` processes and a client on emulated edge links (`LinkProxy`).

Every node listens on its own port and advertises a proxy in front of it,
so whatever reaches a node (peers, the client) crosses that node's link;
nodes and the client reach etcd through one more proxy. Used by
``tests/faults/test_edge_links.py`` (short) and ``benchmarks/edge.py``.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass, field
from typing import Any

import taskmesh
from taskmesh.cli.settings import PROFILES
from taskmesh.cluster import EmbeddedEtcd
from taskmesh.cluster.embedded import free_port
from tests.etcd_fixtures import unique_cluster
from tests.integration.node.support import NodeProcess
from tests.netem import LinkProxy


@dataclass
class Traffic:
    """What the client saw: latencies of answered asks, failures, suspicions."""

    latencies: list[float] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    suspicions: int = 0

    def percentile(self, q: float) -> float:
        ordered = sorted(self.latencies)
        if not ordered:
            return float("nan")
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))]

    @property
    def p50(self) -> float:
        return statistics.median(self.latencies) if self.latencies else float("nan")


class EdgeCluster:
    """Start it with `start`; `close` stops every process and proxy it started."""

    def __init__(
        self,
        *,
        delay: float,
        jitter: float,
        profile: str = "edge",
        nodes: int = 3,
        seed: int = 7,
    ) -> None:
        self.delay = delay
        self.profile = profile
        self.timing = PROFILES[profile]
        self.cluster = unique_cluster()
        self.etcd = EmbeddedEtcd().start()
        port = int(self.etcd.endpoint.rsplit(":", 1)[1])
        self.etcd_link = LinkProxy(("127.0.0.1", port), delay=delay, jitter=jitter, seed=seed)
        self.links: dict[str, LinkProxy] = {}
        self.nodes: dict[str, NodeProcess] = {}
        for i in range(nodes):
            name = f"e{i + 1}"
            listen = free_port()
            self.links[name] = LinkProxy(
                ("127.0.0.1", listen), delay=delay, jitter=jitter, seed=seed + i + 1
            )
            self.nodes[name] = NodeProcess(
                "--etcd", self.etcd_link.http, "--cluster", self.cluster,
                "--listen", f"tcp://127.0.0.1:{listen}", "--advertise", self.links[name].tcp,
                "--profile", profile, "--app", "tests.faults.apps:counter",
                name=name,
            )  # fmt: skip
        self.client: Any = None
        self.suspicions = 0
        """Peers the client's transport suspected so far (every node stays alive)."""

    @property
    def round_trip(self) -> float:
        """The link's round trip: there and back through one proxy."""
        return 2 * self.delay

    def start(self) -> EdgeCluster:
        for node in self.nodes.values():
            node.wait_ready(timeout=120)
        self.client = taskmesh.connect(
            etcd=self.etcd_link.http,
            cluster=self.cluster,
            heartbeat_interval=self.timing["heartbeat_interval"],
            suspect_after=self.timing["suspect_after"],
        )
        self.client.transport.subscribe(self._on_peer)
        self.ask_for(0.0, Traffic(), asks=2 * len(self.nodes))  # connect to every holder first
        return self

    def _on_peer(self, address: str, state: str) -> None:
        """The client's I/O thread."""
        if state == "suspect":
            self.suspicions += 1

    def leaders_elected(self) -> int:
        """How many times any node logged that it was elected leader."""
        return sum(
            1 for node in self.nodes.values() for line in node.stderr if "elected leader" in line
        )

    def ask_for(self, seconds: float, traffic: Traffic, *, asks: int = 0) -> None:
        """Ask the ``counter`` capability in a loop (with retries and a key per ask)
        for ``seconds``, or ``asks`` times."""
        counter = self.client.capability("counter")
        suspected = self.suspicions
        end = time.monotonic() + seconds
        n = len(traffic.latencies) + len(traffic.failures)
        while time.monotonic() < end or asks > 0:
            asks -= 1
            n += 1
            key = f"k{n}-{time.monotonic_ns()}"
            start = time.monotonic()
            try:
                reply = counter.ask({"key": key}, timeout=15.0, retries=5, idempotency_key=key)
                assert reply["key"] == key, reply
                traffic.latencies.append(time.monotonic() - start)
            except Exception as error:
                traffic.failures.append(f"{type(error).__name__}: {error}")
        traffic.suspicions += self.suspicions - suspected

    def close(self) -> None:
        if self.client is not None:
            self.client.close()
        for node in self.nodes.values():
            node.close()
        for link in self.links.values():
            link.close()
        self.etcd_link.close()
        self.etcd.close()
