"""A sync ask sends itself and reads its own answer: the asking thread
borrows the link's socket instead of handing the ask to the I/O thread.

Done naively, a remote sync ask costs four thread hand-offs that raw pyzmq
does not pay (asker -> I/O thread -> actor -> I/O thread -> asker), each a
wake-up of a sleeping thread (20-25 us on the machines measured). When the
link's socket is free (``Link.lock``), the asker sends the link's queue
(other threads' messages first, so FIFO holds per sender), then its ask,
and waits on the socket itself for up to ``hold`` seconds. Its answer then
costs no hand-off on this side. The I/O thread does not poll the socket
while nothing is due that the asker does not read itself
(``Link.needs_reader``), so it is not woken by the answer either.

A slower answer is left to the I/O thread: before letting go, the asker
makes sure the I/O thread watches the socket (``Outbox.attention``). So
does an asker that finds, as it lets go, that the I/O thread wanted the
socket meanwhile (``Outbox.let_go``).
"""

from __future__ import annotations

from collections.abc import Callable

from taskmesh.transport.inbound import Answered, Inbound, hand_over
from taskmesh.transport.link import UP, Link
from taskmesh.transport.outbound import flush
from taskmesh.transport.outbox import Outbox

__all__ = ["lead"]


def lead(
    outbox: Outbox,
    inbound: Inbound,
    link: Link,
    cid: int,
    hold: float,
    prefix: bytes,
    batch_bytes: int,
    until: Callable[[], bool] | None = None,
) -> bool:
    """Send ``link``'s queue (ending with the caller's ask ``cid``) and wait
    up to ``hold`` s for its answer on the socket, in the asking thread.

    Returns False, having sent nothing, when the link is not up or its
    socket is busy: the caller then has the I/O thread send the queue.
    True once the queue was sent; the answer, if it came, is handed over.

    With ``until`` (and ``cid`` 0), it waits for that instead: a tell out of
    credit sends what waits and reads the peer's credit itself, rather than
    wait for the I/O thread, which a busy producing thread holds off the
    GIL for up to the switch interval (5 ms) at a time.
    """
    if link.state != UP or link.blocked or outbox.stopping:
        return False
    lock = link.lock
    if not lock.acquire(False):
        return False
    answered: Answered = []
    try:
        sock = link.socket
        if sock is None or link.state != UP:
            return False
        flush(link, prefix, batch_bytes)
        if link.carry is None:
            end = outbox.clock() + hold
            read = inbound.read_link
            while True:
                left = end - outbox.clock()
                if left <= 0 or link.state != UP:
                    break
                if until is not None and until():
                    break
                if read(link, answered, cid, max(1, int(left * 1000))):
                    break
        if link.queue and link.carry is None and link.state == UP:
            flush(link, prefix, batch_bytes)  # sent meanwhile by other threads
        if link.needs_reader():
            if link.polled:
                # Our sends and reads may have consumed the fd's signal.
                inbound.service(link, answered)
            else:
                outbox.attention.append(link)
                outbox.wake()
    finally:
        outbox.let_go(link)
        if answered:
            hand_over(answered)
    if link.queue:  # queued after our last flush: the I/O thread could not take the lock
        outbox.schedule(link)
    return True
