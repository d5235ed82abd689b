"""Frames to peers: a link's queued envelopes, batched into frames.

Runs wherever ``Link.lock`` is held: the I/O thread, or a sync asker that
sends the queue before its own ask (see :mod:`taskmesh.transport.lead`).
"""

from __future__ import annotations

import contextlib
from typing import Final

import msgpack
import zmq

from taskmesh.errors import MalformedFrame
from taskmesh.transport.envelope import ASK, PING, TELL, decode_frame, join_frame
from taskmesh.transport.link import Link
from taskmesh.transport.outbox import Outbox

__all__ = ["BATCH_BYTES", "fail_queued", "flush"]

BATCH_BYTES: Final = 256 * 1024  # a frame stops growing past this
_BATCH_COUNT: Final = 4096
_zmq_send = zmq.backend.Socket.send  # without pyzmq's Python wrapper: see router.py
_COPY_THRESHOLD: Final = 64 * 1024  # zero-copy sends only pay for big frames
_NOBLOCK: Final = int(zmq.NOBLOCK)


def flush(link: Link, prefix: bytes, batch_bytes: int) -> None:
    """Send what ``link`` has queued, as few frames as the batch limits
    allow; the caller holds ``link.lock`` and the link is up.

    A frame the socket refuses (its high-water mark) is kept as
    ``link.carry`` and the link marked ``blocked``: the I/O thread retries
    it. Asks and pings sent are counted in ``link.unanswered``, tells in
    ``link.credit_due`` (the byte after an envelope's array header is its
    kind).
    """
    sock = link.socket
    assert sock is not None
    tally = link.tally
    queue = link.queue
    while True:
        frame = link.carry
        if frame is None:
            if not queue:
                break
            data = queue.popleft()
            batch = [data]
            size = len(data)
            kind = data[1]
            asks = 1 if kind == ASK else 0
            pings = 1 if kind == PING else 0
            tells = 1 if kind == TELL else 0
            most = link.batch_count
            while queue and size < batch_bytes and len(batch) < most:
                data = queue[0]
                if size + len(data) > batch_bytes:
                    break
                batch.append(queue.popleft())
                size += len(data)
                kind = data[1]
                if kind == TELL:
                    tells += 1
                elif kind == ASK:
                    asks += 1
                elif kind == PING:
                    pings += 1
            frame = join_frame(prefix, batch)
            link.carry_count = len(batch) - pings
            link.unanswered += asks + pings
            if link.window:
                link.credit_due += tells
        try:
            if len(frame) < _COPY_THRESHOLD:
                _zmq_send(sock, frame, _NOBLOCK)
            else:
                _zmq_send(sock, frame, _NOBLOCK, False)
        except zmq.Again:
            link.carry = frame
            link.blocked = True  # retried each millisecond, or when the fd says so
            break
        link.carry = None
        tally.frames_out += 1
        tally.messages_out += link.carry_count
        tally.bytes_out += len(frame)
    if not link.space.is_set():
        link.space.set()


def fail_queued(link: Link, outbox: Outbox) -> None:
    """Dead-letter the tells and fail the asks queued for a link that is
    down; the caller holds ``link.lock``."""
    envelopes: list[bytes] = []
    if link.carry is not None:
        with contextlib.suppress(MalformedFrame):
            envelopes.extend(msgpack.packb(env) for env in decode_frame(link.carry)[2:])
        link.carry = None
    queue = link.queue
    while queue:
        envelopes.append(queue.popleft())
    outbox.dead_envelopes(link.address, envelopes, "peer_unreachable", outbox.unreachable(link))
    link.space.set()
