"""Edge links: 150 ms +- 50 ms each way, a reset every 10 s, a 3 s black hole.

    python benchmarks/edge.py [--steady 20] [--faulty 40] [--profiles default,edge]

Three ``taskmesh node`` processes and a client, each node behind its own
userspace link proxy (``tests/netem.py``) and etcd behind one more, as in
``tests/faults/test_edge_links.py`` but longer. For each timing profile it
measures, over a steady phase (no reset) and a faulty phase (each link reset
every 10 s at different moments, and one 3 s black hole on one node's link
and on etcd's link):

- false suspicions per minute (the client suspected a node; all stay alive);
- the share of asks with retries (``retries=5``, 15 s timeout) answered;
- p50 and p99 ask latency, also as multiples of the link's round trip;
- leadership flaps (elections after the first).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # for tests.edge_links

from tests.edge_links import EdgeCluster, Traffic


def run(profile: str, steady_for: float, faulty_for: float) -> list[str]:
    edge = EdgeCluster(delay=0.15, jitter=0.05, profile=profile)
    try:
        edge.start()
        steady, faulty = Traffic(), Traffic()
        edge.ask_for(steady_for, steady)
        elected = edge.leaders_elected()
        links = [*edge.links.values(), edge.etcd_link]
        for i, link in enumerate(links):
            link.reset_every(10.0, first=1.0 + 2.5 * i)
        edge.ask_for(faulty_for / 2, faulty)
        edge.links["e1"].black_hole(3.0)
        edge.etcd_link.black_hole(3.0)
        edge.ask_for(faulty_for / 2, faulty)
        flaps = edge.leaders_elected() - elected
        rtt = edge.round_trip
        rows = []
        for label, traffic, seconds in (
            ("steady", steady, steady_for),
            ("resets + black hole", faulty, faulty_for),
        ):
            asked = len(traffic.latencies) + len(traffic.failures)
            ok = len(traffic.latencies) / asked if asked else 0.0
            rows.append(
                f"| {profile} | {label} | {traffic.suspicions * 60 / seconds:.1f} "
                f"| {ok:.1%} ({asked}) | {traffic.p50:.2f} s ({traffic.p50 / rtt:.1f} RTT) "
                f"| {traffic.percentile(0.99):.2f} s ({traffic.percentile(0.99) / rtt:.1f} RTT) "
                f"| {flaps if label != 'steady' else elected - 1} |"
            )
        return rows
    finally:
        edge.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steady", type=float, default=20.0)
    parser.add_argument("--faulty", type=float, default=40.0)
    parser.add_argument("--profiles", default="default,edge")
    args = parser.parse_args()
    rows = []
    for profile in args.profiles.split(","):
        rows += run(profile, args.steady, args.faulty)
        print(rows[-2], rows[-1], sep="\n", flush=True)
    print()
    print("| profile | phase | false suspicions/min | asks answered | p50 | p99 | leader flaps |")
    print("|---|---|---:|---:|---:|---:|---:|")
    print("\n".join(rows))


if __name__ == "__main__":
    main()
