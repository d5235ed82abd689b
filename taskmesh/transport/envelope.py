"""The wire format: msgpack envelopes in versioned frames.

One ZeroMQ frame carries a batch of envelopes from one sender::

    frame    = [version, sender, envelope, envelope, ...]     (a msgpack array)
    envelope = [kind, target, correlation_id, deadline_ms, payload]
    ask      = [ASK, target, correlation_id, deadline_ms, payload, idempotency_key]?
    traced   = [kind, target, correlation_id, deadline_ms, payload, idempotency_key | None,
                {"traceparent": ..., "tracestate": ...}]           (a TELL or an ASK)

``version`` is :data:`PROTOCOL_VERSION`; ``sender`` is the sending node's
advertised address; ``target`` the actor name (``None`` for replies and
heartbeats); ``deadline_ms`` the time the asker has left, in milliseconds
(``None`` for no deadline), because clocks differ between machines: the
receiver turns it into a local monotonic deadline.

A tell or ask sent with tracing on (:mod:`taskmesh.tracing`) carries W3C
trace context headers as a seventh element; an envelope without them is
the same as before, so untraced traffic costs nothing more and a node
reads the old format. (A node of an older release drops the seventh
element's envelopes as malformed: turn tracing on once every node runs
this one.) A node with tracing off delivers such a message without it.

Envelopes are encoded in the sending thread, so a value msgpack cannot
encode (:class:`~taskmesh.errors.InvalidMessage`) or an oversized message
(:class:`~taskmesh.errors.MessageTooLarge`) fails at the caller. The I/O
thread only concatenates encoded envelopes behind a frame header, which is
why a batch costs one ``send`` and one ``unpackb``. Nothing is ever
unpickled; msgpack extension types are refused (the standard Timestamp
type decodes to ``msgpack.Timestamp``).
"""

from __future__ import annotations

import traceback as _traceback
from collections.abc import Sequence
from typing import Any, Final

import msgpack

from taskmesh.errors import (
    ActorNotFound,
    AskTimeout,
    InvalidMessage,
    MailboxFull,
    MalformedFrame,
    MessageTooLarge,
    PeerUnreachable,
    RemoteError,
)

__all__ = [
    "ASK",
    "CREDIT",
    "FAIL",
    "KINDS",
    "PING",
    "PONG",
    "PROTOCOL_VERSION",
    "REPLY",
    "TELL",
    "decode_envelope",
    "decode_frame",
    "encode_envelope",
    "encode_failure",
    "encode_traced_envelope",
    "error_from_failure",
    "frame_prefix",
    "join_frame",
    "trace_headers",
]

PROTOCOL_VERSION: Final = 1

TELL: Final = 1
ASK: Final = 2
REPLY: Final = 3
FAIL: Final = 4
PING: Final = 5
PONG: Final = 6
CREDIT: Final = 7
"""``[CREDIT, actor, n, None, None]``: the receiver took ``n`` more tells for
``actor`` from this sender (see :mod:`taskmesh.transport.flow`)."""
KINDS: Final = frozenset({TELL, ASK, REPLY, FAIL, PING, PONG, CREDIT})

# Error codes carried by a FAIL envelope: [code, type_name, message, traceback].
_REMOTE: Final = 0
_NOT_FOUND: Final = 1
_MAILBOX_FULL: Final = 2
_TIMEOUT: Final = 3
_UNREACHABLE: Final = 4
_CODES: Final[dict[type[BaseException], int]] = {
    ActorNotFound: _NOT_FOUND,
    MailboxFull: _MAILBOX_FULL,
    AskTimeout: _TIMEOUT,
    PeerUnreachable: _UNREACHABLE,
}
_TYPES: Final[dict[int, type[Exception]]] = {
    _NOT_FOUND: ActorNotFound,
    _MAILBOX_FULL: MailboxFull,
    _TIMEOUT: AskTimeout,
    _UNREACHABLE: PeerUnreachable,
}

_packb = msgpack.packb
_unpackb = msgpack.unpackb


def encode_envelope(
    kind: int,
    target: str | None,
    correlation_id: int,
    deadline_ms: int | None,
    payload: Any,
    max_size: int,
    idempotency_key: str | None = None,
) -> bytes:
    """Encode one envelope; runs in the sending thread.

    An ask with an ``idempotency_key`` carries it as a sixth element.

    Raises :class:`InvalidMessage` if msgpack cannot encode ``payload`` and
    :class:`MessageTooLarge` if the result exceeds ``max_size`` bytes.
    """
    try:
        if idempotency_key is None:
            data: bytes = _packb([kind, target, correlation_id, deadline_ms, payload])
        else:
            envelope = [kind, target, correlation_id, deadline_ms, payload, idempotency_key]
            data = _packb(envelope)
    except (TypeError, ValueError, OverflowError) as exc:
        raise InvalidMessage(f"message cannot be encoded as msgpack: {exc}") from exc
    if len(data) > max_size:
        raise MessageTooLarge(f"encoded message is {len(data)} bytes, the limit is {max_size}")
    return data


def encode_traced_envelope(
    kind: int,
    target: str | None,
    correlation_id: int,
    deadline_ms: int | None,
    payload: Any,
    max_size: int,
    idempotency_key: str | None,
    headers: dict[str, str],
) -> bytes:
    """:func:`encode_envelope` with trace context ``headers`` (a tell or an
    ask; sending thread). Same errors."""
    envelope = [kind, target, correlation_id, deadline_ms, payload, idempotency_key, headers]
    try:
        data: bytes = _packb(envelope)
    except (TypeError, ValueError, OverflowError) as exc:
        raise InvalidMessage(f"message cannot be encoded as msgpack: {exc}") from exc
    if len(data) > max_size:
        raise MessageTooLarge(f"encoded message is {len(data)} bytes, the limit is {max_size}")
    return data


_MAX_HEADERS: Final = 4
_MAX_HEADER: Final = 1024  # W3C: a tracestate of up to 512 characters; traceparent is 55


def trace_headers(env: list[Any]) -> dict[str, str] | None:
    """The trace headers of a seven-element envelope, or None if it is not
    a well-formed traced tell or ask (then the frame is malformed). Checks
    the shape only: a header that is no valid W3C value is ignored where it
    is read, as the W3C propagator does."""
    kind, key, headers = env[0], env[5], env[6]
    if kind == TELL:
        if key is not None:
            return None
    elif kind != ASK or not (key is None or type(key) is str):
        return None
    if type(headers) is not dict or len(headers) > _MAX_HEADERS:
        return None
    for name, value in headers.items():
        if type(name) is not str or type(value) is not str or len(value) > _MAX_HEADER:
            return None
    return headers


def encode_failure(correlation_id: int, exc: BaseException, max_size: int) -> bytes:
    """Encode a FAIL envelope that re-raises ``exc`` (or a RemoteError) at the asker."""
    code = _CODES.get(type(exc), _REMOTE)
    tb = "".join(_traceback.format_exception(exc)) if code == _REMOTE else ""
    body = [code, type(exc).__name__, str(exc)[:4096], tb[-16384:]]
    try:
        return encode_envelope(FAIL, None, correlation_id, None, body, max_size)
    except MessageTooLarge:  # a small cap: keep what fits, the type name first
        body = [code, type(exc).__name__[:64], str(exc)[: max_size // 4], ""]
        return encode_envelope(FAIL, None, correlation_id, None, body, 1 << 20)


def error_from_failure(body: Any) -> Exception:
    """Turn a FAIL envelope's payload back into the exception to raise."""
    if type(body) is not list or len(body) != 4:
        return RemoteError("MalformedFrame", "unreadable error reply")
    code, type_name, message, tb = body
    known = _TYPES.get(code) if type(code) is int else None
    if known is not None:
        return known(str(message))
    return RemoteError(str(type_name), str(message), str(tb))


def frame_prefix(sender: str) -> bytes:
    """The encoded ``version, sender`` part of every frame a node sends."""
    prefix: bytes = _packb(PROTOCOL_VERSION) + _packb(sender)
    return prefix


def join_frame(prefix: bytes, envelopes: Sequence[bytes]) -> bytes:
    """Build one frame from a prefix and encoded envelopes."""
    n = len(envelopes) + 2
    if n < 16:
        head = bytes((0x90 | n,))
    elif n < 0x10000:
        head = b"\xdc" + n.to_bytes(2, "big")
    else:
        head = b"\xdd" + n.to_bytes(4, "big")
    return head + prefix + b"".join(envelopes)


def _refuse_ext(code: int, data: bytes) -> Any:
    raise ValueError(f"msgpack extension type {code} is not accepted")


def decode_frame(data: bytes) -> list[Any]:
    """Decode a frame into ``[version, sender, envelope, ...]``.

    Checks only the frame itself (array, version, sender); each envelope is
    checked by its consumer. Raises :class:`MalformedFrame` on anything
    else. Declared lengths are bounded by the frame's own size, so a hostile
    length cannot make the decoder allocate more than it received.
    """
    try:
        frame = _unpackb(
            data,
            raw=False,
            strict_map_key=False,
            ext_hook=_refuse_ext,
        )
    except Exception as exc:  # msgpack raises several unrelated types
        raise MalformedFrame(f"undecodable frame: {type(exc).__name__}: {exc}") from None
    if type(frame) is not list or len(frame) < 2:
        raise MalformedFrame("frame is not an array of [version, sender, envelopes...]")
    if frame[0] != PROTOCOL_VERSION or type(frame[0]) is not int:
        raise MalformedFrame(f"unknown protocol version {frame[0]!r}")
    if type(frame[1]) is not str:
        raise MalformedFrame("sender is not a string")
    return frame


def decode_envelope(data: bytes) -> list[Any] | None:
    """Decode one encoded envelope (as queued for sending); None if it is
    not one. For turning envelopes that were never sent into dead letters."""
    try:
        env = _unpackb(data, raw=False, strict_map_key=False, ext_hook=_refuse_ext)
    except Exception:  # msgpack raises several unrelated types
        return None
    return env if type(env) is list and len(env) >= 5 else None
