"""A web gateway: an asyncio web service that turns HTTP requests into asks.

Run:  pip install 'taskmesh[web]'
      python examples/web_gateway.py [--port 8000] [--etcd URL]

This process is a taskmesh node (with an embedded etcd unless ``--etcd``
is given) that hosts two async actors, and a Starlette app served by
uvicorn on the same machine. Each request awaits an actor found by
capability, without blocking the web server's event loop:

    curl http://127.0.0.1:8000/greet/ada      -> {"greeting": "hello, ada", ...}
    curl 'http://127.0.0.1:8000/divide?a=1&b=4' -> {"quotient": 0.25}
    curl 'http://127.0.0.1:8000/divide?a=1&b=0' -> HTTP 500 {"error": "ZeroDivisionError: ..."}

More nodes can serve the same capabilities: ``taskmesh node --etcd URL
--app examples.web_gateway:setup`` (the URL this program prints), and
requests are spread over every holder. Ctrl-C or SIGTERM stops the web
server, then the node.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import socket
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

import taskmesh


class Greeter(taskmesh.Actor):
    """Greets; awaits a (simulated) slow backend, up to 100 requests at once."""

    capabilities = ("greet",)
    max_concurrency = 100

    async def receive(self, message: dict[str, Any]) -> dict[str, Any]:
        await asyncio.sleep(0.05)  # stands in for a database or another service
        return {"greeting": f"hello, {message['name']}", "node": self.node.node_id}


class Calculator(taskmesh.Actor):
    """Divides; dividing by zero fails, and the client sees the error."""

    capabilities = ("divide",)

    async def receive(self, message: dict[str, Any]) -> dict[str, Any]:
        return {"quotient": message["a"] / message["b"]}


def setup(node: taskmesh.Node) -> None:
    """``--app examples.web_gateway:setup``: the actors this gateway calls."""
    node.spawn(Greeter, name=f"greeter-{node.node_id}")
    node.spawn(Calculator, name=f"calculator-{node.node_id}")


def make_app(node: taskmesh.Node) -> Starlette:
    """The web app: each route awaits one capability-routed ask."""

    async def ask(capability: str, message: Any) -> JSONResponse:
        try:
            answer = await node.capability(capability).ask_async(message, timeout=5.0)
        except taskmesh.AskTimeout as error:
            return JSONResponse({"error": str(error)}, status_code=504)
        except (taskmesh.ActorNotFound, taskmesh.MailboxFull) as error:
            return JSONResponse({"error": str(error)}, status_code=503)
        except taskmesh.RemoteError as error:  # the actor failed on another node
            return JSONResponse({"error": f"{error.type_name}: {error}"}, status_code=500)
        except Exception as error:  # the actor failed on this node
            return JSONResponse({"error": f"{type(error).__name__}: {error}"}, status_code=500)
        return JSONResponse(answer)

    async def greet(request: Request) -> JSONResponse:
        return await ask("greet", {"name": request.path_params["name"]})

    async def divide(request: Request) -> JSONResponse:
        try:
            a, b = float(request.query_params["a"]), float(request.query_params["b"])
        except (KeyError, ValueError):
            return JSONResponse({"error": "give numbers a and b"}, status_code=400)
        return await ask("divide", {"a": a, "b": b})

    return Starlette(
        routes=[Route("/greet/{name}", greet), Route("/divide", divide)],
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, default=8000, help="0 picks a free port")
    parser.add_argument("--etcd", default=None, help="join this etcd (default: embedded)")
    parser.add_argument("--cluster", default="web")
    opts = parser.parse_args()

    node = taskmesh.Node(cluster=opts.cluster, etcd=opts.etcd, name="gateway").start()
    try:
        setup(node)
        print(f"web_gateway: etcd at {node.etcd_endpoints[0]}", flush=True)
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", opts.port))
        sock.listen(128)  # connections wait in the backlog until uvicorn accepts them
        port = sock.getsockname()[1]
        server = uvicorn.Server(uvicorn.Config(make_app(node), log_level="warning", lifespan="off"))
        print(f"web_gateway: serving at http://127.0.0.1:{port}", flush=True)
        # uvicorn stops on SIGINT/SIGTERM, then raises the signal again with the
        # handlers it found: make both end this program through `finally`.
        signal.signal(signal.SIGTERM, _exit)
        with contextlib.suppress(KeyboardInterrupt, SystemExit):
            server.run(sockets=[sock])
    finally:
        node.stop()
        print("web_gateway: stopped", flush=True)


def _exit(signum: int, frame: object) -> None:
    raise SystemExit(0)


if __name__ == "__main__":
    main()
