"""Sharded entities: activations, throughput against named actors, re-homing, memory.

Run from the repository root::

    .venv/bin/python benchmarks/entities.py            # about two minutes
    .venv/bin/python benchmarks/entities.py --quick    # a smoke run

What runs: an etcd (embedded, started here), three ``taskmesh node``
processes hosting ``benchmarks/entity_apps.py``, and in this process a
client made with ``taskmesh.connect``. Every figure goes through the public
API (``client.entity(type, id)``, ``client.ref(name)``).

1. **Activations**: pipelined tells from the client to N distinct ids (N
   = 100,000 by default), each activating its entity where its shard
   lives, until the three nodes report N active entities: seconds and
   activations/s.
2. **RSS per active entity**: the three nodes' RSS after the activations
   minus before, over N (after a garbage collection in each node).
3. **Throughput to active entities against named actors**, in the same
   run, in alternating rounds (medians, and their ratio): sync asks
   (round trips/s) and pipelined tells (messages/s, until the nodes have
   counted them all), cycling over 999 active entities against cycling
   over 999 async named actors (333 per node). Both are async (light)
   actors, so the ratio isolates the addressing: shard lookup, entity
   target, the host's hand-off. Goal: >= 0.8.
4. **Re-homing after kill -9** of a node (not the leader): seconds until
   every shard has an owner among the other two (as this client's shard
   map sees it), and until an entity of one of its shards answers again
   (an ask with retries). The lease TTL is 3 s; the leader waits 0.25 s
   more.

The machines here are shared and noisy: compare the ratios of one run.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import taskmesh  # noqa: E402
from taskmesh.cluster import EmbeddedEtcd  # noqa: E402
from tests.integration.node.support import NodeProcess  # noqa: E402

CLUSTER = "bench-entities"
NODES = ("n1", "n2", "n3")
ACTIVE = 999
"""Active entities (and named actors) the throughput rounds cycle over."""
NAMES = [f"echo-{node}-{i}" for i in range(ACTIVE // 3) for node in NODES]


def stats(client: taskmesh.Client, gc: bool = False) -> dict[str, dict[str, int]]:
    return {n: client.ask(f"stats-{n}", "gc" if gc else "get", timeout=60.0) for n in NODES}


def total(client: taskmesh.Client, key: str) -> int:
    return sum(s[key] for s in stats(client).values())


def active(client: taskmesh.Client) -> int:
    """Active ``bench`` entities on the three nodes (asked of each node)."""
    count = 0
    for member in client.members().values():
        answer = client.locator.ref(member.node, member.address, "~?").ask(None, timeout=30.0)
        count += answer["types"].get("bench", {}).get("active", 0)
    return count


def wait(predicate: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out waiting for {what}")
        time.sleep(0.05)  # polling the nodes' figures


def activations(client: taskmesh.Client, n: int) -> tuple[float, float]:
    """Seconds to activate ``n`` entities, and RSS bytes per active entity."""
    before = sum(s["rss"] for s in stats(client, gc=True).values())
    start = time.perf_counter()
    for i in range(n):
        client.entity("bench", f"device-{i}").tell(i)
    wait(lambda: active(client) >= n, 600, f"{n} active entities")
    elapsed = time.perf_counter() - start
    after = sum(s["rss"] for s in stats(client, gc=True).values())
    return elapsed, (after - before) / n


def sync_entities(client: taskmesh.Client, seconds: float) -> float:
    n = 0
    start = time.perf_counter()
    end = start + seconds
    while True:
        for _ in range(100):
            client.entity("bench", f"device-{n % ACTIVE}").ask(n, timeout=10.0)
            n += 1
        now = time.perf_counter()
        if now >= end:
            return n / (now - start)


def sync_named(client: taskmesh.Client, seconds: float) -> float:
    names = NAMES
    n = 0
    start = time.perf_counter()
    end = start + seconds
    while True:
        for _ in range(100):
            client.ref(names[n % ACTIVE]).ask(n, timeout=10.0)
            n += 1
        now = time.perf_counter()
        if now >= end:
            return n / (now - start)


def tells(client: taskmesh.Client, count: int, kind: str) -> float:
    names = NAMES
    first = total(client, kind)
    start = time.perf_counter()
    if kind == "entity":
        for i in range(count):
            client.entity("bench", f"device-{i % ACTIVE}").tell(i)
    else:
        for i in range(count):
            client.ref(names[i % ACTIVE]).tell(i)
    wait(lambda: total(client, kind) >= first + count, 120, f"{count} {kind} tells counted")
    return count / (time.perf_counter() - start)


def rehoming(client: taskmesh.Client, nodes: dict[str, NodeProcess]) -> tuple[float, float]:
    """kill -9 a node that does not lead; return (all shards owned again,
    first answer from an entity of its shards), in seconds after the kill."""
    leader = client.leader()
    victim = next(n for n in NODES if n != leader)
    # The shard map is read only to pick an entity the victim owns and to see
    # the shards move; the figure itself is the public ask's first answer.
    entities = client._entities
    assert entities is not None
    view = entities.map.view("bench")
    assert view is not None
    theirs = next(
        f"device-{i}" for i in range(ACTIVE) if entities.owner_of("bench", f"device-{i}") == victim
    )
    nodes[victim].proc.kill()
    killed = time.monotonic()
    client.entity("bench", theirs).ask("again", timeout=30.0, retries=60)
    answered = time.monotonic() - killed

    def rehomed() -> bool:
        owners = [view.owner(s) for s in range(view.shards)]
        return all(o is not None and o.node != victim for o in owners)

    wait(rehomed, 60, "every shard re-homed")
    return time.monotonic() - killed, answered


def main(n: int, rounds: int, seconds: float, count: int) -> None:
    etcd = EmbeddedEtcd().start()
    nodes: dict[str, NodeProcess] = {}
    client = None
    try:
        for name in NODES:
            nodes[name] = NodeProcess(
                "--etcd", etcd.endpoint, "--cluster", CLUSTER,
                "--app", "benchmarks.entity_apps:setup", "--log-level", "WARNING",
                name=name,
            )  # fmt: skip
        for node in nodes.values():
            node.wait_ready()
        client = taskmesh.connect(etcd=etcd.endpoint, cluster=CLUSTER)
        wait(lambda: len(client.actors()) >= len(NAMES) + 3, 60, "the actors")
        client.entity("bench", "warm-up").ask(0, timeout=60.0)  # the shard map, placed
        elapsed, per_entity = activations(client, n)
        print(f"activations: {n:,} entities across 3 nodes in {elapsed:.1f} s "
              f"({n / elapsed:,.0f}/s); RSS {per_entity:,.0f} bytes per active entity")  # fmt: skip
        sync_e, sync_n, tell_e, tell_n = [], [], [], []
        sync_entities(client, 0.5)  # warm-up: links, caches
        sync_named(client, 0.5)
        for _ in range(rounds):
            sync_e.append(sync_entities(client, seconds))
            sync_n.append(sync_named(client, seconds))
            tell_e.append(tells(client, count, "entity"))
            tell_n.append(tells(client, count, "named"))
        for label, ent, named in (
            ("sync asks (round trips/s)", sync_e, sync_n),
            ("pipelined tells (messages/s)", tell_e, tell_n),
        ):
            e, m = statistics.median(ent), statistics.median(named)
            print(f"{label}: entities {e:,.0f}, named actors {m:,.0f}, ratio {e / m:.2f}")
        shards, answer = rehoming(client, nodes)
        print(f"re-homing after kill -9: first answer {answer:.2f} s, all shards {shards:.2f} s")
    finally:
        if client is not None:
            client.close()
        for node in nodes.values():
            node.close()
        etcd.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--entities", type=int, default=100_000, help="activations to time")
    parser.add_argument("--rounds", type=int, default=5, help="throughput rounds of each kind")
    parser.add_argument("--seconds", type=float, default=2.0, help="length of a sync round")
    parser.add_argument("--tells", type=int, default=20_000, help="tells per round")
    parser.add_argument("--quick", action="store_true", help="a smoke run")
    args = parser.parse_args()
    if args.quick:
        args.entities, args.rounds, args.seconds, args.tells = 10_000, 1, 0.5, 3_000
    main(args.entities, args.rounds, args.seconds, args.tells)
