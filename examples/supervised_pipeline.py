"""A supervised pipeline on one node: a parser that crashes on bad input and
a writer that collects results, under a one-for-one supervisor.

Run:  python examples/supervised_pipeline.py

The parser is restarted after each crash (a fresh instance at the same
address); the records queued behind the bad one are kept and still parsed,
and the writer never notices.
"""

from __future__ import annotations

import logging
from typing import Any

import taskmesh


class Writer(taskmesh.Actor):
    """Collects parsed records; answers "results" with what it has."""

    def on_start(self) -> None:
        self.rows: list[dict[str, Any]] = []

    def receive(self, message: Any) -> Any:
        if message == "results":
            return list(self.rows)
        self.rows.append(message)
        return None


class Parser(taskmesh.Actor):
    """Parses "key=value" lines and forwards them; raises on anything else."""

    def on_start(self) -> None:
        self.writer = self.system.ref("writer")

    def on_restart(self, reason: BaseException | None) -> None:
        print(f"parser restarted after: {reason!r}")

    def receive(self, line: str) -> bool:
        key, value = line.split("=")  # "garbage" raises ValueError
        self.writer.tell({key.strip(): value.strip()})
        return True


def main() -> None:
    logging.basicConfig(level=logging.ERROR, format="%(levelname)s %(name)s: %(message)s")
    with taskmesh.ActorSystem() as system:
        system.spawn(
            taskmesh.Supervisor,
            name="pipeline",
            strategy="one_for_one",
            max_restarts=3,
            within=5.0,
            children=[
                taskmesh.Child(Writer, name="writer", restart="permanent"),
                taskmesh.Child(Parser, name="parser", restart="permanent"),
            ],
        )
        parser = system.ref("parser")
        for line in ["a = 1", "b = 2", "garbage", "c = 3"]:
            parser.tell(line)
        try:
            parser.ask("also garbage", timeout=5.0)
        except ValueError as error:
            print(f"the asker sees the crash: {error}")
        parser.ask("d = 4", timeout=5.0)  # answered by the fresh parser
        rows = system.ref("writer").ask("results", timeout=5.0)
        print(f"writer holds: {rows}")
        print(f"restarts: {system.restart_count}, dead letters: {system.dead_letters.total}")


if __name__ == "__main__":
    main()
