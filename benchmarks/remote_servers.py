"""The receiving processes of ``benchmarks/remote.py``.

``python benchmarks/remote_servers.py raw N`` runs N raw pyzmq ROUTER
threads; ``python benchmarks/remote_servers.py taskmesh N system|emulated``
runs a taskmesh transport hosting actors ``echo0..echoN-1`` and ``sink``;
``python benchmarks/remote_servers.py otlp`` runs an OTLP/HTTP endpoint
that takes traces and drops them (the tracing rows' collector).
Each prints its endpoints on one line, space-separated, then serves until
stdin closes or it is terminated.
"""

from __future__ import annotations

import os
import queue
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import msgpack
import zmq

ROOT = Path(__file__).resolve().parent.parent


def start_server(args: list[str]) -> tuple[subprocess.Popen[str], list[str]]:
    """Start a server process; return it and the endpoints it printed."""
    proc = subprocess.Popen(
        [sys.executable, str(Path(__file__).resolve()), *args],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if not line:
        proc.kill()
        raise RuntimeError(f"server {args} did not start")
    return proc, line.split()


def raw_server(count: int) -> None:
    ctx = zmq.Context()
    endpoints = []
    socks = []
    for _ in range(count):
        sock = ctx.socket(zmq.ROUTER)
        sock.setsockopt(zmq.SNDHWM, 100_000)
        sock.setsockopt(zmq.RCVHWM, 100_000)
        sock.bind("tcp://127.0.0.1:*")
        endpoints.append(sock.getsockopt_string(zmq.LAST_ENDPOINT))
        socks.append(sock)

    def serve(sock: zmq.Socket[bytes]) -> None:
        packb, unpackb = msgpack.packb, msgpack.unpackb
        counted = 0
        while True:
            ident, data = sock.recv_multipart()
            kind, payload = unpackb(data)
            if kind == 0:
                counted += 1
            elif kind == 1:
                sock.send_multipart((ident, packb(payload)))
            else:
                sock.send_multipart((ident, packb(counted)))
                counted = 0

    for sock in socks:
        threading.Thread(target=serve, args=(sock,), daemon=True).start()
    print(" ".join(endpoints), flush=True)
    sys.stdin.read()


def taskmesh_server(count: int, actors: str) -> None:
    sys.path.insert(0, str(ROOT))
    from taskmesh.transport import Transport

    if actors == "system":
        import taskmesh.actors as ta

        class Echo(ta.Actor):
            inline = True  # a short, non-blocking receive

            def receive(self, message: Any) -> Any:
                return message

        class ThreadedEcho(ta.Actor):
            def receive(self, message: Any) -> Any:
                return message

        class Sink(ta.Actor):
            def __init__(self) -> None:
                self.count = 0

            def receive(self, message: Any) -> Any:
                if message == "count":
                    n, self.count = self.count, 0
                    return n
                if message == "reset":
                    self.count = 0
                    return 0
                self.count += 1
                return None

        system = ta.ActorSystem(mailbox_size=1_000_000)
        for i in range(count):
            system.spawn(Echo, name=f"echo{i}")
        system.spawn(ThreadedEcho, name="threaded")
        system.spawn(Sink, name="sink")
        deliver = system.deliver
    else:
        mailboxes: dict[str, queue.SimpleQueue[Any]] = {}

        def echo_loop(box: queue.SimpleQueue[Any]) -> None:
            while True:
                message, reply = box.get()
                if reply is not None:
                    reply.set(message)

        def sink_loop(box: queue.SimpleQueue[Any]) -> None:
            counted = 0
            while True:
                message, reply = box.get()
                if reply is None:
                    counted += 1
                elif message == "count":
                    reply.set(counted)
                    counted = 0
                else:
                    counted = 0
                    reply.set(0)

        for i in range(count):
            mailboxes[f"echo{i}"] = queue.SimpleQueue()
            threading.Thread(target=echo_loop, args=(mailboxes[f"echo{i}"],), daemon=True).start()
        mailboxes["sink"] = queue.SimpleQueue()
        threading.Thread(target=sink_loop, args=(mailboxes["sink"],), daemon=True).start()

        def deliver(
            target: str,
            message: Any,
            reply: Any,
            deadline: float | None,
            idempotency_key: str | None = None,
        ) -> None:
            mailboxes[target].put((message, reply))

    transport = Transport(deliver=deliver)
    transport.start()
    print(transport.address, flush=True)
    sys.stdin.read()
    transport.stop()


def otlp_sink() -> None:
    """Answer every OTLP/HTTP export with 200 and drop it."""
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, as a collector does

        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length", 0)))
            self.send_response(200)
            self.send_header("Content-Type", "application/x-protobuf")
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    print(f"http://127.0.0.1:{server.server_address[1]}", flush=True)
    sys.stdin.read()
    server.shutdown()


if __name__ == "__main__":
    if "--cpu" in sys.argv:
        at = sys.argv.index("--cpu")
        os.sched_setaffinity(0, {int(sys.argv[at + 1])})
        del sys.argv[at : at + 2]
    if sys.argv[1] == "raw":
        raw_server(int(sys.argv[2]))
    elif sys.argv[1] == "otlp":
        otlp_sink()
    else:
        taskmesh_server(int(sys.argv[2]), sys.argv[3])
