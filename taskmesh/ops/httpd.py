"""The node's HTTP endpoint: ``/metrics`` (Prometheus), ``/healthz`` and
``/readyz`` (for Kubernetes probes and systemd watchdogs), and the live
cluster page: ``/`` with its static files and ``/api/cluster`` (JSON).

The page's files ship inside the package (``taskmesh/ops/static/``): no
CDN, no build step, nothing fetched from the internet."""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from taskmesh.errors import ConfigError

__all__ = ["OpsServer"]

_STATIC = {
    "/": ("index.html", "text/html; charset=utf-8"),
    "/static/app.js": ("app.js", "text/javascript; charset=utf-8"),
    "/static/style.css": ("style.css", "text/css; charset=utf-8"),
}

log = logging.getLogger("taskmesh.ops")


class OpsServer:
    """Serves the endpoint from its own thread (daemon; one more per request).

    ``ready`` and ``healthy`` are called in a request thread for every
    probe; ``cluster``, if given, builds the JSON of ``/api/cluster`` in a
    request thread (without it the page says the view is off).
    """

    def __init__(
        self,
        host: str,
        port: int,
        *,
        registry: CollectorRegistry,
        ready: Callable[[], bool],
        healthy: Callable[[], bool] = lambda: True,
        cluster: Callable[[], dict[str, object]] | None = None,
    ) -> None:
        self._registry = registry
        self._cluster = cluster
        self._ready = ready
        self._healthy = healthy
        handler = self._handler()
        try:
            self._server = ThreadingHTTPServer((host, port), handler)
        except OSError as error:
            raise ConfigError(f"cannot serve metrics on {host}:{port}: {error}") from None
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="taskmesh:ops-http", daemon=True
        )

    @property
    def port(self) -> int:
        """The bound port (useful with port 0)."""
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        host = self._server.server_address[0]
        return f"http://{host!s}:{self.port}"

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5.0)

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # a request thread
                path = self.path.split("?", 1)[0]
                if path == "/metrics":
                    try:
                        body = generate_latest(server._registry)
                    except Exception:
                        log.exception("collecting metrics failed")
                        self._send(500, b"collecting metrics failed\n", "text/plain")
                        return
                    self._send(200, body, CONTENT_TYPE_LATEST)
                elif path == "/healthz":
                    ok = _safely(server._healthy)
                    self._send(200 if ok else 503, b"ok\n" if ok else b"unhealthy\n", "text/plain")
                elif path == "/readyz":
                    ok = _safely(server._ready)
                    self._send(
                        200 if ok else 503, b"ready\n" if ok else b"not ready\n", "text/plain"
                    )
                elif path == "/api/cluster":
                    self._cluster()
                elif path in _STATIC:
                    name, content_type = _STATIC[path]
                    self._send(200, _static(name), content_type)
                else:
                    self._send(
                        404, b"not found: try /, /api/cluster, /metrics, /healthz or /readyz\n",
                        "text/plain",
                    )  # fmt: skip

            def _cluster(self) -> None:
                if server._cluster is None:
                    self._send(404, b'{"error": "no cluster view on this endpoint"}\n', _JSON)
                    return
                try:
                    body = json.dumps(server._cluster(), default=str).encode()
                except Exception as error:
                    log.exception("collecting the cluster view failed")
                    message = {"error": f"collecting the cluster view failed: {error}"}
                    self._send(500, json.dumps(message).encode(), _JSON)
                    return
                self._send(200, body, _JSON)

            def _send(self, code: int, body: bytes, content_type: str) -> None:
                self.send_response(code)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Cache-Control", "no-store")
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                log.debug("http: " + format, *args)

        return Handler


_JSON = "application/json"


def _static(name: str) -> bytes:
    """A file of the page, read from the installed package."""
    return (resources.files("taskmesh.ops") / "static" / name).read_bytes()


def _safely(check: Callable[[], bool]) -> bool:
    try:
        return bool(check())
    except Exception:
        log.exception("health check failed")
        return False
