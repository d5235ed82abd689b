"""A long chaos soak: ``tests/chaos.py`` for as many minutes as you like.

    .venv/bin/python benchmarks/soak.py --minutes 10 [--seed N]

Three nodes and a client under steady ask and tell traffic while a seeded
schedule kills and restarts nodes, freezes them, stops etcd and fills a
mailbox; at the end every promise is checked (see ``tests/chaos.py``). It
prints each fault as it lands, the summary, and any broken promise with the
seed that replays the run.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.chaos import Chaos, seed_from_environment  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--seed", type=int, default=None)
    args = parser.parse_args()
    seed = args.seed if args.seed is not None else seed_from_environment()
    started = time.monotonic()
    report = Chaos(seed, seconds=args.minutes * 60, log=lambda line: print(line, flush=True)).run()
    print(f"{time.monotonic() - started:.0f} s: {report.summary()}")
    problems = report.problems()
    for problem in problems:
        print(f"BROKEN: {problem}")
    if problems:
        print(f"replay with --seed {seed}")
        raise SystemExit(1)
    print("every promise held")


if __name__ == "__main__":
    main()
