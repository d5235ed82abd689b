"""Fail fast when etcd cannot be reached, naming the URL.

Without this check a node waits for its first watch snapshot (15 s) and
then names a key prefix, not etcd; a client command waits its start
timeout. One HTTP request to etcd's client port (``/health``, served by
every etcd v3) answers in milliseconds when etcd is there. It goes over
plain HTTP(S), not gRPC: a gRPC channel opened and closed here shared
gRPC's global connection state with the node's own client, and a node then
hung now and then at exit (seen in tests/integration/ops/test_rough_edges.py).
"""

from __future__ import annotations

import ssl
import time
import urllib.error
import urllib.request

from taskmesh.cli.settings import Settings
from taskmesh.errors import EtcdUnavailable

__all__ = ["PATIENCE", "check_etcd"]

PATIENCE = 3.0
"""Seconds to keep trying before giving up."""


def check_etcd(settings: Settings, patience: float = PATIENCE) -> None:
    """Raise :class:`EtcdUnavailable` ("cannot reach etcd at URL") unless some
    endpoint of ``settings.etcd`` answers HTTP within ``patience`` seconds.

    Any answer counts, even an error status: whether etcd is healthy and
    accepts our credentials is for the etcd client to say, with its own
    clear errors."""
    context = _tls(settings)
    deadline = time.monotonic() + patience
    while True:
        for url in settings.etcd:
            if _answers(
                url.rstrip("/") + "/health", context, max(deadline - time.monotonic(), 0.2)
            ):
                return
        if time.monotonic() >= deadline:
            where = ", ".join(settings.etcd)
            raise EtcdUnavailable(f"cannot reach etcd at {where} (no answer within {patience:g} s)")
        time.sleep(0.1)


def _answers(url: str, context: ssl.SSLContext | None, timeout: float) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=min(timeout, 2.0), context=context):
            return True
    except urllib.error.HTTPError:
        return True  # an HTTP error status is an answer
    except TimeoutError:
        # Connected, but no answer yet (a read timeout; urllib wraps a
        # connect timeout in URLError): etcd is there and starved for CPU,
        # as on a swamped machine. The node's start waits for it (its
        # start timeout); failing here would end a node that would start.
        return True
    except urllib.error.URLError as error:
        # A TLS handshake refused (no client certificate, another CA) is an
        # answer too: the etcd client reports it in its own words.
        return isinstance(error.reason, ssl.SSLError)
    except (OSError, ValueError):
        return False


def _tls(settings: Settings) -> ssl.SSLContext | None:
    if not any(url.startswith("https://") for url in settings.etcd):
        return None
    context = ssl.create_default_context(cafile=str(settings.etcd_ca) if settings.etcd_ca else None)
    if settings.etcd_cert and settings.etcd_key:
        context.load_cert_chain(str(settings.etcd_cert), str(settings.etcd_key))
    return context
