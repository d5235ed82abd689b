"""Inline actors: remote messages run on the delivering (I/O) thread when idle.

A plain thread calling ``ActorSystem.deliver`` stands in for the transport's
I/O thread here; tests/integration/node/test_inline.py runs the real one.
"""

from __future__ import annotations

import sys
import threading
from typing import Any

import pytest

import taskmesh
from taskmesh.actors import ActorSystem, Reply
from taskmesh.actors.future import forbid_waiting
from taskmesh.errors import ActorError
from tests.waiting import wait_until


class Recorder(taskmesh.Actor):
    """Records (source, seq) and the thread it ran on; detects overlap."""

    inline = True

    def on_start(self) -> None:
        self.seen: list[tuple[str, int]] = []
        self.threads: set[str] = set()
        self.running = False
        self.overlaps = 0

    def receive(self, message: Any) -> Any:
        if self.running:
            self.overlaps += 1
        self.running = True
        try:
            if message == "report":
                return {"seen": self.seen, "threads": self.threads, "overlaps": self.overlaps}
            if message == "fail":
                raise ValueError("inline failure")
            if isinstance(message, dict) and "ask" in message:
                return message["ask"].ask("x", timeout=5.0)
            source, seq, spin = message
            for _ in range(spin):  # some messages take a while, so others queue
                pass
            self.seen.append((source, seq))
            self.threads.add(threading.current_thread().name)
            return seq
        finally:
            self.running = False


def deliver_from(system: ActorSystem, name: str, messages: list[Any]) -> list[Reply]:
    """Deliver ``messages`` from a thread named like the transport's, as asks."""
    replies = [Reply() for _ in messages]

    def run() -> None:
        for message, reply in zip(messages, replies, strict=True):
            system.deliver(name, message, reply, None)

    thread = threading.Thread(target=run, name="fake-io")
    thread.start()
    thread.join(30)
    return replies


def test_an_idle_inline_actor_answers_on_the_delivering_thread(system: ActorSystem) -> None:
    system.spawn(Recorder, name="rec")
    replies = deliver_from(system, "rec", [("remote", i, 0) for i in range(3)])
    assert [r.get(5.0) for r in replies] == [0, 1, 2]
    report = system.ref("rec").ask("report", timeout=5.0)
    assert report["threads"] == {"fake-io"}


def test_remote_order_holds_and_receive_never_overlaps_under_local_traffic(
    system: ActorSystem,
) -> None:
    ref = system.spawn(Recorder, name="rec")
    stop = threading.Event()
    switch = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # switch threads often: open every race window

    def local() -> None:  # local tells keep the actor's own thread busy at times
        seq = 0
        while not stop.is_set():
            ref.tell(("local", seq, 2000))
            seq += 1
            ref.ask(("local", seq, 0), timeout=10.0)
            seq += 1

    sender = threading.Thread(target=local)
    sender.start()
    sent = 0
    try:
        # Rounds of 5,000 until both paths were taken (inline on the
        # delivering thread, and queued): on a loaded machine the local
        # traffic may keep the actor busy for a whole round.
        for _ in range(5):
            remote = [("remote", i, 500 if i % 7 == 0 else 0) for i in range(sent, sent + 5000)]
            replies = deliver_from(system, "rec", remote)
            assert [r.get(10.0) for r in replies] == list(range(sent, sent + 5000))
            sent += 5000
            if ref.ask("report", timeout=5.0)["threads"] == {"fake-io", "taskmesh:rec"}:
                break
    finally:
        sys.setswitchinterval(switch)
        stop.set()
        sender.join(10)
    report = ref.ask("report", timeout=5.0)
    seen_remote = [seq for source, seq in report["seen"] if source == "remote"]
    assert seen_remote == list(range(sent))
    seen_local = [seq for source, seq in report["seen"] if source == "local"]
    assert seen_local == sorted(seen_local) and seen_local
    assert report["overlaps"] == 0
    assert report["threads"] == {"fake-io", "taskmesh:rec"}


def test_an_inline_failure_reaches_the_asker_and_the_supervisor_restarts_it(
    system: ActorSystem,
) -> None:
    sup = system.spawn(
        taskmesh.Supervisor,
        name="sup",
        children=[taskmesh.Child(Recorder, name="rec")],
    )
    assert sup is not None
    wait_until(lambda: "rec" in system.names(), timeout=10.0)
    failing, after = deliver_from(system, "rec", ["fail", ("remote", 1, 0)])
    with pytest.raises(ValueError, match="inline failure"):
        failing.get(5.0)
    assert after.get(10.0) == 1
    wait_until(lambda: system.restart_count == 1, timeout=10.0)
    report = system.ref("rec").ask("report", timeout=5.0)
    assert report["seen"] == [("remote", 1)]  # a fresh instance handled it


def test_a_sync_ask_from_an_inline_receive_on_the_io_thread_raises(system: ActorSystem) -> None:
    system.spawn(Recorder, name="rec")
    other = system.spawn(Recorder, name="other")
    replies: list[Reply] = []

    def io_thread() -> None:
        forbid_waiting(threading.get_ident())
        try:
            reply = Reply()
            system.deliver("rec", {"ask": other}, reply, None)
            replies.append(reply)
        finally:
            forbid_waiting(threading.get_ident(), False)

    thread = threading.Thread(target=io_thread)
    thread.start()
    thread.join(10)
    with pytest.raises(ActorError, match="I/O thread"):
        replies[0].get(5.0)


class Gated(taskmesh.Actor):
    """Inline; "fail" waits for the gate, then raises. Answers name the instance."""

    inline = True
    instances = 0

    def __init__(self, gate: threading.Event) -> None:
        self.gate = gate

    def on_start(self) -> None:
        Gated.instances += 1
        self.number = Gated.instances

    def receive(self, message: Any) -> Any:
        if message == "fail":
            self.gate.wait(10)
            raise ValueError("inline failure")
        return self.number


def test_a_message_taken_while_an_inline_run_fails_waits_for_the_restart(
    system: ActorSystem,
) -> None:
    gate = threading.Event()
    Gated.instances = 0
    system.spawn(
        taskmesh.Supervisor,
        name="sup",
        children=[taskmesh.Child(Gated, name="gated", args=(gate,))],
    )
    wait_until(lambda: "gated" in system.names(), timeout=10.0)
    ref = system.ref("gated")
    busy = ref._cell._busy
    assert busy is not None
    wait_until(lambda: not busy.locked(), timeout=10.0)  # started, waiting for mail
    failing = Reply()
    io = threading.Thread(target=lambda: system.deliver("gated", "fail", failing, None))
    io.start()  # runs inline and waits on the gate, holding the actor
    wait_until(busy.locked, timeout=10.0)
    local = ref.ask_async("who")  # the actor's thread takes it and waits for the inline run
    wait_until(lambda: ref._cell.mailbox.qsize() == 0, timeout=10.0)
    gate.set()
    io.join(10)
    with pytest.raises(ValueError, match="inline failure"):
        failing.get(5.0)
    assert local.get(10.0) == 2  # run by the restarted instance, not the failed one
