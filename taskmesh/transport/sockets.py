"""How the transport's sockets are made: options that make failures visible.

The inbound ROUTER sets ROUTER_MANDATORY (an answer to a vanished asker
raises and becomes a dead letter); every socket sets high-water marks
(bounded queues in ZeroMQ too) and MAXMSGSIZE (a peer sending an oversized
frame is disconnected by ZeroMQ itself).

Links (DEALERs) do not set IMMEDIATE: with it, libzmq drops the answers a
peer sent just before it disconnected when we have not read them yet (a
node that answered and then stopped lost its last answers). The link's own
state keeps sends from going to a peer that is not connected.

Runs on the I/O thread, which owns the sockets' lifecycle.
"""

from __future__ import annotations

from typing import Final

import zmq

from taskmesh.errors import TransportError
from taskmesh.transport.security import CurveKeys

__all__ = ["Context", "SocketOptions", "bind_router", "open_dealer"]

_HEADER_SLACK: Final = 4096  # frame header: array head, version, sender address
_MONITOR_EVENTS: Final = (
    zmq.EVENT_HANDSHAKE_SUCCEEDED
    | zmq.EVENT_DISCONNECTED
    | zmq.EVENT_CONNECT_RETRIED
    | zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL
    | zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL
    | zmq.EVENT_HANDSHAKE_FAILED_AUTH
)

Context = zmq.Context[zmq.Socket[bytes]]


class SocketOptions:
    """How the I/O thread sets up its sockets (from the Transport's settings)."""

    __slots__ = ("connect_timeout", "high_water_mark", "keys", "linger", "max_frame")

    def __init__(
        self,
        *,
        keys: CurveKeys | None,
        max_message_size: int,
        high_water_mark: int,
        connect_timeout: float,
        linger: float,
    ) -> None:
        self.keys = keys
        # A frame holds at most one batch or one maximal message, plus headers;
        # ZeroMQ drops a peer that sends a longer one (Inbound._too_long catches
        # what the slack lets by).
        self.max_frame = max_message_size + _HEADER_SLACK
        self.high_water_mark = high_water_mark
        self.connect_timeout = connect_timeout
        self.linger = linger


def _limits(sock: zmq.Socket[bytes], options: SocketOptions) -> None:
    sock.setsockopt(zmq.SNDHWM, options.high_water_mark)
    sock.setsockopt(zmq.RCVHWM, options.high_water_mark)
    sock.setsockopt(zmq.MAXMSGSIZE, options.max_frame)


def bind_router(
    context: Context, options: SocketOptions, listen: str
) -> tuple[zmq.Socket[bytes], str]:
    """The bound inbound socket and the endpoint it got (port 0: a free one).
    Raises :class:`TransportError` when the address cannot be bound."""
    router = context.socket(zmq.ROUTER)
    router.setsockopt(zmq.LINGER, 0)
    router.setsockopt(zmq.ROUTER_MANDATORY, 1)
    _limits(router, options)
    keys = options.keys
    if keys is not None:
        router.curve_secretkey = keys.secret_key
        router.curve_publickey = keys.public_key
        router.curve_server = True
    endpoint = listen
    if endpoint.startswith("tcp://") and endpoint.endswith(":0"):
        endpoint = endpoint[:-2] + ":*"
    try:
        router.bind(endpoint)
    except zmq.ZMQError as exc:
        router.close(0)
        raise TransportError(f"cannot listen on {listen}: {exc}") from exc
    return router, router.getsockopt_string(zmq.LAST_ENDPOINT)


def open_dealer(
    context: Context, options: SocketOptions, server_key: bytes | None
) -> tuple[zmq.Socket[bytes], zmq.Socket[bytes]]:
    """A link's socket (not yet connected) and its monitor socket."""
    sock = context.socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    _limits(sock, options)
    sock.setsockopt(zmq.RECONNECT_IVL, 100)
    sock.setsockopt(zmq.RECONNECT_IVL_MAX, 1000)
    sock.setsockopt(zmq.CONNECT_TIMEOUT, int(options.connect_timeout * 1000))
    keys = options.keys
    if keys is not None and server_key is not None:
        sock.curve_secretkey = keys.secret_key
        sock.curve_publickey = keys.public_key
        sock.curve_serverkey = server_key
    return sock, sock.get_monitor_socket(_MONITOR_EVENTS)
