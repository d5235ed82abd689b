"""Frames to peers: queued messages per link, and replies to remote asks.

Runs on the I/O thread.
"""

from __future__ import annotations

import contextlib
from collections import deque
from typing import Any

import msgpack
import zmq

from taskmesh.errors import MalformedFrame, PeerUnreachable
from taskmesh.transport.envelope import decode_frame, join_frame
from taskmesh.transport.iostate import (
    _BATCH_COUNT,
    _COPY_THRESHOLD,
    _NOBLOCK,
    _SNDMORE,
    IOState,
)
from taskmesh.transport.link import Link

__all__ = ["Outbound"]


class Outbound(IOState):
    """Batching queued envelopes into frames and sending them."""

    def _send_replies(self) -> None:
        """Send the replies actors posted, one frame per asker and batch.

        A reply the asker's connection cannot take now (its high-water mark
        is reached) waits in a per-asker backlog, in order, and is retried
        every millisecond; one to an asker that is gone is a dead letter.
        """
        replies = self.t._replies
        backlog = self.reply_backlog
        if len(replies) == 1 and not backlog:  # the sync-ask case: skip the grouping
            identity, data = replies.popleft()
            frame = (join_frame(self.prefix, [data]), 1)
            if not self._send_reply(identity, frame):
                backlog[identity] = deque((frame,))
            return
        groups: dict[bytes, list[bytes]] = {}
        for _ in range(len(replies)):
            identity, data = replies.popleft()
            group = groups.get(identity)
            if group is None:
                groups[identity] = [data]
            else:
                group.append(data)
        for identity, group in groups.items():
            start = 0
            while start < len(group):
                end, size = start, 0
                while end < len(group) and (
                    end == start or size + len(group[end]) <= self.batch_bytes
                ):
                    size += len(group[end])
                    end += 1
                frame = (join_frame(self.prefix, group[start:end]), end - start)
                waiting = backlog.get(identity)
                if waiting is not None:
                    waiting.append(frame)
                elif not self._send_reply(identity, frame):
                    backlog[identity] = deque((frame,))
                start = end

    def _send_reply(self, identity: bytes, frame: tuple[bytes, int]) -> bool:
        """Send one reply frame; False if the asker cannot take it yet."""
        assert self.router is not None
        counters = self.t.counters
        data, count = frame
        try:
            self.router.send(identity, _NOBLOCK | _SNDMORE)
            self.router.send(data, _NOBLOCK)
        except zmq.Again:
            return False
        except zmq.ZMQError as exc:
            counters.dead_letter("reply_undeliverable", count)
            self.limited.warning("reply", "could not send %d replies: %s", count, exc)
            return True
        counters.frames_out += 1
        counters.messages_out += count
        counters.bytes_out += len(data)
        return True

    def _retry_replies(self) -> None:
        backlog = self.reply_backlog
        for identity in list(backlog):
            waiting = backlog[identity]
            while waiting and self._send_reply(identity, waiting[0]):
                waiting.popleft()
            if not waiting:
                del backlog[identity]
            elif len(waiting) > self.t.max_queue:
                dropped = waiting.popleft()[1]
                self.t.counters.dead_letter("reply_queue_full", dropped)
                self.limited.warning(
                    "reply_full", "asker %r reads no replies; dropped %d", identity, dropped
                )

    def _flush(self, link: Link) -> None:
        """Send what ``link`` has queued; the caller holds ``link.lock``."""
        sock = link.socket
        assert sock is not None
        counters = self.t.counters
        queue = link.queue
        prefix = self.prefix
        while True:
            frame = link.carry
            if frame is None:
                if not queue:
                    break
                batch = [queue.popleft()]
                size = len(batch[0])
                limit = self.batch_bytes
                while queue and size < limit and len(batch) < _BATCH_COUNT:
                    data = queue[0]
                    if size + len(data) > limit:
                        break
                    batch.append(queue.popleft())
                    size += len(data)
                frame = join_frame(prefix, batch)
                link.carry_count = len(batch)
            try:
                sock.send(frame, _NOBLOCK, copy=len(frame) < _COPY_THRESHOLD)
            except zmq.Again:
                link.carry = frame
                link.blocked = True  # retried each millisecond, or when the fd says so
                break
            link.carry = None
            counters.frames_out += 1
            counters.messages_out += link.carry_count
            counters.bytes_out += len(frame)
        if not link.space.is_set():
            link.space.set()

    def _fail_queued(self, link: Link) -> None:
        """Dead-letter tells and fail asks queued for a link that is down."""
        envelopes: list[bytes] = []
        if link.carry is not None:
            with contextlib.suppress(MalformedFrame):
                envelopes.extend(_reencode(decode_frame(link.carry)[2:]))
            link.carry = None
        queue = link.queue
        while queue:
            envelopes.append(queue.popleft())
        exc = PeerUnreachable(f"{link.address} is unreachable: {link.reason}")
        self.t._dead_envelopes(link.address, envelopes, "peer_unreachable", exc)
        link.space.set()


def _reencode(envelopes: list[Any]) -> list[bytes]:
    return [msgpack.packb(env) for env in envelopes]
