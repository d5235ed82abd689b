"""The I/O thread's waker outlives the thread: a sender may still wake it."""

from __future__ import annotations

import gc
import os

from taskmesh.transport import Transport
from taskmesh.transport.outbox import Waker


def test_waking_after_the_io_thread_ended_writes_to_no_closed_descriptor() -> None:
    transport = Transport(listen=None)
    transport.start()
    outbox = transport._outbox  # what a sending thread holds
    waker = outbox.waker
    assert waker is not None
    transport.stop()
    assert outbox.waker is None  # later senders find none
    # One that took it before the end: its pipe is still open (else the
    # write would fail, or land in a file that reused the descriptor).
    for _ in range(100_000):  # more than a pipe holds: a full pipe is fine
        waker.wake()
    os.fstat(waker.fd)


def test_the_pipe_is_closed_once_nobody_holds_the_waker() -> None:
    waker = Waker()
    fd = waker.fd
    pipe = os.fstat(fd).st_ino
    del waker
    gc.collect()
    try:
        now = os.fstat(fd).st_ino
    except OSError:
        return  # closed
    assert now != pipe, "the pipe outlived its waker"  # else reused by another file
