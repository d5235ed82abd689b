"""A peer process for the transport's integration tests.

Hosts a transport and a few emulated actors (a thread reading a queue each,
as the real runtime does), prints the transport's address on one line and
serves until its stdin closes or it is killed::

    python -m tests.integration.transport.peer [--listen EP] [--secret F --authorized D]

Actors: ``echo`` answers an ask with the message (``{"raise": text}``
raises ValueError instead, ``{"sleep": s}`` waits first), ``seq`` records tells and answers ``"get"``
with them, ``control`` answers ``{"op": "stats"}`` with the transport's
counters, ``{"op": "bye"}`` with ``"bye"`` and then stops the transport at
once, and ``{"op": "tell"|"ask", "address", "name", "message"}`` by
sending that to another process, so tests can check both directions.
"""

from __future__ import annotations

import argparse
import queue
import sys
import threading
from collections.abc import Callable
from typing import Any

from taskmesh.actors.future import ReplyTo
from taskmesh.errors import ActorNotFound
from taskmesh.transport import CurveKeys, Transport


class Peer:
    def __init__(self, args: argparse.Namespace) -> None:
        keys = None
        if args.secret:
            keys = CurveKeys.from_files(args.secret, args.authorized)
        self.delivered = 0
        self.bye = False
        self.seq: list[Any] = []
        self.inbox: queue.SimpleQueue[tuple[Callable[[Any], Any], Any, ReplyTo | None]] = (
            queue.SimpleQueue()
        )
        self.handlers: dict[str, Callable[[Any], Any]] = {
            "echo": self.echo,
            "seq": self.record,
            "control": self.control,
        }
        self.transport = Transport(
            listen=args.listen, deliver=self.deliver, keys=keys, max_message_size=args.max_size
        )
        threading.Thread(target=self.run, daemon=True).start()

    def deliver(
        self,
        target: str,
        message: Any,
        reply: ReplyTo | None,
        deadline: float | None,
        idempotency_key: str | None = None,
    ) -> None:
        """Runs on the transport's I/O thread: only enqueue."""
        handler = self.handlers.get(target)
        if handler is None:
            raise ActorNotFound(f"no actor named {target!r}")
        self.delivered += 1
        self.inbox.put((handler, message, reply))

    def run(self) -> None:
        """The actor thread."""
        while True:
            handler, message, reply = self.inbox.get()
            try:
                result = handler(message)
            except Exception as exc:
                if reply is not None:
                    reply.fail(exc)
            else:
                if reply is not None:
                    reply.set(result)
            if self.bye:
                self.transport.stop()
                return

    def echo(self, message: Any) -> Any:
        if isinstance(message, dict) and "raise" in message:
            raise ValueError(message["raise"])
        if isinstance(message, dict) and "sleep" in message:
            threading.Event().wait(float(message["sleep"]))
        return message

    def record(self, message: Any) -> Any:
        if message == "get":
            return self.seq
        self.seq.append(message)
        return None

    def control(self, message: dict[str, Any]) -> Any:
        op = message["op"]
        if op == "stats":
            snap = self.transport.snapshot()
            snap["delivered"] = self.delivered
            return snap
        if op == "bye":
            self.bye = True
            return "bye"
        ref = self.transport.ref(message["address"], message["name"])
        if op == "tell":
            for item in message["messages"]:
                ref.tell(item)
            return len(message["messages"])
        return ref.ask(message["message"], timeout=10.0)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--listen", default="tcp://127.0.0.1:0")
    parser.add_argument("--secret")
    parser.add_argument("--authorized")
    parser.add_argument("--max-size", type=int, default=1 << 20)
    peer = Peer(parser.parse_args())
    peer.transport.start()
    print(peer.transport.address, flush=True)
    sys.stdin.read()
    peer.transport.stop()


if __name__ == "__main__":
    main()
