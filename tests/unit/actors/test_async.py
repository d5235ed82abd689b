"""What only async actors have: the event loop, concurrency, awaiting, light weight.

(Everything both kinds share runs over both in the other test files.)
"""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any, cast

import pytest

import taskmesh
from taskmesh.actors import ActorSystem
from taskmesh.actors.directives import Action, Directive
from taskmesh.actors.future import Reply, forbid_waiting
from taskmesh.actors.loopcell import LoopCell
from taskmesh.actors.mailbox import Boxed
from taskmesh.errors import ActorError
from tests.unit.actors.support import Both, Gate, Kind, Worker
from tests.waiting import wait_until


class Echo(taskmesh.Actor):
    async def receive(self, message: Any) -> Any:
        return message


def test_thousands_of_async_actors_share_one_event_loop_thread(system: ActorSystem) -> None:
    system.spawn(Echo, name="first").ask("warm up")
    threads = threading.active_count()
    refs = [system.spawn(Echo) for _ in range(3_000)]
    assert [ref.ask(i) for i, ref in enumerate(refs[::100])] == list(range(30))
    assert refs[-1].ask("last") == "last"
    assert threading.active_count() == threads
    info = system.info(refs[0].name)
    assert info is not None and info.kind == "async"
    system.stop()
    assert system.names() == []


class Napper(taskmesh.Actor):
    """Counts in ``stats`` how many of its receives run at once."""

    max_concurrency = 3

    def __init__(self, gate: Gate, stats: dict[str, int]) -> None:
        self.gate = gate
        self.stats = stats

    async def receive(self, message: Any) -> Any:
        stats = self.stats
        stats["running"] += 1
        stats["most"] = max(stats["most"], stats["running"])
        await self.gate.wait()
        stats["running"] -= 1
        return message


class SingleNapper(Napper):
    max_concurrency = 1


def test_while_one_actor_awaits_the_others_run(system: ActorSystem) -> None:
    gate = Gate()
    napper = system.spawn(SingleNapper, gate, {"running": 0, "most": 0}, name="napper")
    echo = system.spawn(Echo, name="echo")
    pending = napper.ask_async("nap", timeout=30)
    assert echo.ask("meanwhile") == "meanwhile"
    assert not pending.done()
    gate.set()
    assert pending.get(30) == "nap"


class Flooded(taskmesh.Actor):
    """Its first message floods it with ``n`` more and has ``witness`` told."""

    def __init__(self, n: int, witness: taskmesh.ActorRef) -> None:
        self.n, self.witness, self.handled = n, witness, 0

    async def receive(self, message: Any) -> Any:
        self.handled += 1
        if message == "flood":
            for i in range(self.n):
                self.ref.tell(i)
            self.witness.tell(self)
        return self.handled


class Witness(taskmesh.Actor):
    """Notes how many messages the flooded actor had handled when it ran."""

    def __init__(self) -> None:
        self.saw: list[int] = []

    async def receive(self, message: Any) -> Any:
        if isinstance(message, Flooded):
            self.saw.append(message.handled)
        return self.saw


def test_a_flooded_actor_lets_the_other_actors_run_meanwhile(system: ActorSystem) -> None:
    witness = system.spawn(Witness, name="witness")
    flooded = system.spawn(Flooded, 20_000, witness, name="flooded")
    flooded.tell("flood")
    wait_until(lambda: witness.ask("saw") != [], message="the witness ran")
    assert witness.ask("saw")[0] < 20_001  # before the flood was handled
    assert flooded.ask("count") == 20_002  # and the flood was handled in full


@pytest.mark.parametrize(("actor", "most"), [(Napper, 3), (SingleNapper, 1)])
def test_max_concurrency_bounds_the_receives_that_overlap(
    system: ActorSystem, actor: type[Napper], most: int
) -> None:
    gate, stats = Gate(), {"running": 0, "most": 0}
    ref = system.spawn(actor, gate, stats, name="napper")
    pending = [ref.ask_async(i, timeout=30) for i in range(5)]
    wait_until(lambda: stats["running"] == most)
    gate.set()
    assert sorted(reply.get(30) for reply in pending) == list(range(5))
    assert stats["most"] == most


def test_a_stop_cancels_the_receives_still_running(system: ActorSystem) -> None:
    gate, stats = Gate(), {"running": 0, "most": 0}
    ref = system.spawn(Napper, gate, stats, name="napper")
    pending = [ref.ask_async(i, timeout=30) for i in range(4)]
    wait_until(lambda: stats["running"] == 3)
    assert system.stop_actor("napper", timeout=10) is True
    for reply in pending[:3]:
        with pytest.raises(ActorError, match="restarted or stopped"):
            reply.get(10)
    with pytest.raises(taskmesh.ActorNotFound):
        pending[3].get(10)


class AsyncLife(taskmesh.Actor):
    """Awaits in every lifecycle hook; fails once on "boom"."""

    def __init__(self, log: list[str]) -> None:
        self.log = log

    async def on_start(self) -> None:
        await asyncio.sleep(0)
        self.log.append("start")

    async def on_stop(self) -> None:
        await asyncio.sleep(0)
        self.log.append("stop")

    async def on_restart(self, reason: BaseException | None) -> None:
        await asyncio.sleep(0)
        self.log.append(f"restart {reason!r}")

    async def receive(self, message: Any) -> Any:
        if message == "boom":
            raise ValueError("boom")
        return list(self.log)


def test_async_lifecycle_hooks_are_awaited_on_the_loop(system: ActorSystem) -> None:
    log: list[str] = []
    ref = system.spawn(AsyncLife, log, name="life")
    assert ref.ask("log") == ["start"]
    with pytest.raises(ValueError):
        ref.ask("boom")
    assert ref.ask("log") == ["start", "stop", "restart ValueError('boom')", "start"]
    assert ref.stop() is True
    assert log[-1] == "stop"


def test_a_class_that_mixes_kinds_is_refused_with_a_clear_error(system: ActorSystem) -> None:
    class Mixed(taskmesh.Actor):
        async def on_start(self) -> None:
            pass

        def receive(self, message: Any) -> Any:
            return message

    with pytest.raises(taskmesh.ConfigError, match="make receive `async def` too"):
        system.spawn(Mixed)

    class Inline(Echo):
        inline = True

    with pytest.raises(taskmesh.ConfigError, match="inline is for threaded actors"):
        system.spawn(Inline)


def test_refs_are_awaitable_from_any_asyncio_program(system: ActorSystem, kind: Kind) -> None:
    ref = system.spawn(kind(Worker), name="w")
    gate = Gate()
    slow = system.spawn(kind(Worker), name="slow", gate=gate)

    async def main() -> tuple[Any, list[Any]]:
        answer = await ref.ask_async("hello", timeout=10)
        await ref.tell_async("told")
        with pytest.raises(taskmesh.AskTimeout):
            await slow.ask_async("wait", timeout=0.05)
        with pytest.raises(ValueError, match="boom"):
            await ref.ask_async("boom", timeout=10)
        return answer, await ref.ask_async("handled", timeout=10)

    answer, handled = asyncio.run(main())
    gate.set()
    assert answer == "hello"
    assert handled == []  # a fresh instance after "boom"


def test_ask_async_on_a_running_loop_waits_for_room_without_blocking_it(
    system: ActorSystem, kind: Kind
) -> None:
    gate = Gate()
    ref = system.spawn(kind(Worker), name="w", gate=gate, mailbox_size=2)
    ref.tell("wait")
    wait_until(lambda: system.mailbox_depths()["w"] == 0)
    ref.tell(1)
    ref.tell(2)

    async def main() -> Any:
        reply = ref.ask_async("patient", timeout=30)  # returns at once: no room yet
        ticks = 0
        while ticks < 3:  # the loop keeps running meanwhile
            await asyncio.sleep(0.01)
            ticks += 1
        assert not reply.done()
        threading.Thread(target=gate.set).start()
        return await reply

    assert asyncio.run(main()) == "patient"


def test_tell_async_waits_for_room_then_raises_mailbox_full_after_the_send_timeout(
    kind: Kind,
) -> None:
    with taskmesh.ActorSystem(send_timeout=0.1) as system:
        gate = Gate()
        ref = system.spawn(kind(Worker), name="w", gate=gate, mailbox_size=1)
        ref.tell("wait")
        wait_until(lambda: system.mailbox_depths()["w"] == 0)
        ref.tell(1)

        async def main() -> None:
            await ref.tell_async("refused")

        with pytest.raises(taskmesh.MailboxFull):
            asyncio.run(main())
        assert system.dead_letters.counts() == {"mailbox_full": 1}
        gate.set()


class Parent(taskmesh.Actor):
    """An async actor that spawns and asks another from its receive."""

    async def receive(self, message: Any) -> Any:
        child = self.system.spawn(Echo)
        return await child.ask_async(message, timeout=10)


def test_an_async_actor_spawns_and_awaits_other_actors(system: ActorSystem) -> None:
    assert system.spawn(Parent, name="parent").ask("via a child") == "via a child"


# --- spawn does not wait for on_start (issue 10) ----------------------------------


class SlowStart(Both):
    def __init__(self, gate: Gate, log: list[str]) -> None:
        self.gate = gate
        self.log = log

    def on_start(self) -> None:
        if not asyncio.iscoroutinefunction(type(self).receive):
            self.gate.wait()  # a threaded actor's on_start may block
            self.log.append("started")

    async def handle(self, message: Any) -> Any:
        if not self.log:  # an async actor waits in its first receive instead
            await self.gate.wait()
            self.log.append("started")
        return list(self.log)


def test_spawn_returns_before_on_start_has_run_and_messages_wait_for_it(
    system: ActorSystem, kind: Kind
) -> None:
    gate, log = Gate(), []
    ref = system.spawn(kind(SlowStart), gate, log, name="slow")
    pending = ref.ask_async("first", timeout=30)
    assert log == [] and not pending.done()
    gate.set()
    assert pending.get(30) == ["started"]


class FailsToStart(Both):
    starts = 0

    def on_start(self) -> None:
        type(self).starts += 1
        if type(self).starts == 1:
            raise RuntimeError("no database yet")

    async def handle(self, message: Any) -> Any:
        return type(self).starts


def test_a_failing_on_start_is_reported_to_the_supervisor_which_restarts_the_actor(
    system: ActorSystem, kind: Kind
) -> None:
    actor = kind(FailsToStart)
    actor.starts = 0
    ref = system.spawn(actor, name="flaky")  # returns although on_start fails
    assert ref.ask("which instance?") == 2
    assert system.restart_count == 1


class Ordered(Both):
    def __init__(self, log: list[str]) -> None:
        self.log = log

    def on_start(self) -> None:
        self.log.append(f"begin {self.name}")
        time.sleep(0.02)  # would let the next child start meanwhile, if it could
        self.log.append(f"end {self.name}")

    async def handle(self, message: Any) -> Any:
        return None


def test_a_supervisor_starts_its_children_in_order_each_on_start_finishing_first(
    system: ActorSystem, kind: Kind
) -> None:
    log: list[str] = []
    children = [taskmesh.Child(kind(Ordered), name=n, args=(log,)) for n in ("a", "b", "c")]
    system.spawn(taskmesh.Supervisor, name="sup", children=children)
    # the supervisor's spawn returns once its children are up, so their names resolve
    assert log == ["begin a", "end a", "begin b", "end b", "begin c", "end c"]
    assert system.ref("c").ask("ping") is None


class Recorder(taskmesh.Actor):
    def __init__(self) -> None:
        self.seen: list[Any] = []

    async def receive(self, message: Any) -> Any:
        if message == "seen":
            return list(self.seen)
        self.seen.append(message)
        return message


def test_deliver_from_an_io_thread_reaches_async_actors_in_order(system: ActorSystem) -> None:
    refs = [system.spawn(Recorder, name=f"r{i}") for i in range(3)]
    replies: list[Reply] = []

    def io_thread() -> None:  # stands in for the transport's I/O thread: must never block
        forbid_waiting(threading.get_ident())
        try:
            for n in range(3_000):
                reply = Reply()
                system.deliver(f"r{n % 3}", n, reply, None)
                replies.append(reply)
                system.deliver(f"r{n % 3}", -n, None, None)
        finally:
            forbid_waiting(threading.get_ident(), False)

    thread = threading.Thread(target=io_thread)
    thread.start()
    thread.join(30)
    assert [reply.get(30) for reply in replies] == list(range(3_000))
    for i, ref in enumerate(refs):
        expected = [m for n in range(i, 3_000, 3) for m in (n, -n)]
        assert ref.ask("seen") == expected


class Held(taskmesh.Actor):
    """Waits in its first receive until ``go`` is set."""

    def __init__(self, go: threading.Event) -> None:
        self.go = go

    async def receive(self, message: Any) -> Any:
        while message == "first" and not self.go.is_set():
            await asyncio.sleep(0.005)
        return message


class _StopsWhenAnAskIsTaken:
    """A cell's queue that posts a stop to the cell right after handing out
    a boxed envelope: the race of a supervisor's directive with the drain."""

    def __init__(self, queue: Any, cell: Any) -> None:
        self.queue = queue
        self.cell = cell

    def get(self, block: bool = True) -> Any:
        item = self.queue.get(block)
        if type(item) is Boxed:
            self.cell.post(Directive(Action.STOP))
        return item

    def __getattr__(self, name: str) -> Any:
        return getattr(self.queue, name)


def test_a_message_taken_as_a_stop_lands_fails_its_ask_instead_of_vanishing(
    system: ActorSystem,
) -> None:
    go = threading.Event()
    ref = system.spawn(Held, go, name="held")
    assert ref.ask("ready") == "ready"
    cell = system._cells["held"]
    wait_until(lambda: cell._task is None, message="the drain ended")
    cell.mailbox._queue = _StopsWhenAnAskIsTaken(cell.mailbox._queue, cell)
    ref.tell("first")
    pending = ref.ask_async("second", timeout=30)
    go.set()
    with pytest.raises(taskmesh.ActorNotFound, match="stopped before handling"):
        pending.get(20)


class Stuck(taskmesh.Actor):
    """``"hang"`` awaits for ever; anything else is echoed; counts stops."""

    def __init__(self, journal: list[str]) -> None:
        self.journal = journal

    async def receive(self, message: Any) -> Any:
        if message == "hang":
            self.journal.append("hanging")
            await asyncio.Event().wait()
        return message

    def on_stop(self) -> None:
        self.journal.append("stopped")


def test_an_interrupt_cuts_a_stuck_receive_short_so_a_stop_can_proceed(
    system: ActorSystem,
) -> None:
    journal: list[str] = []
    ref = system.spawn(Stuck, journal, name="stuck")
    stuck = ref.ask_async("hang", timeout=60)
    queued = ref.ask_async("behind", timeout=60)
    wait_until(lambda: journal == ["hanging"], message="the receive hangs")
    cell = cast(LoopCell, system._cells["stuck"])
    cell.post(Directive(Action.STOP))
    cell.interrupt()
    with pytest.raises(ActorError, match="stopped while handling"):
        stuck.get(20)
    with pytest.raises(taskmesh.ActorNotFound):
        queued.get(20)  # not lost: refused, as anything queued for a stopped actor
    wait_until(lambda: cell.ended, message="the actor ended")
    assert journal == ["hanging", "stopped"]
