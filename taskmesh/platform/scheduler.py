"""The leader fires schedules: every tick once, across leader failover.

Every node runs a `Scheduler`; only the leader's acts. For each tick:

1. **Record, fenced.** The leader writes ``schedule-state/<name>`` =
   ``{tick, status: "sending", token}`` in a transaction guarded by its
   fencing token and by the state's previous revision. A leader that lost
   its leadership (even one that has not noticed yet) cannot record a tick,
   so it cannot fire one.
2. **Deliver, effect-once.** It asks the target with ``retries`` and
   ``idempotency_key="<schedule>:<tick>"``.
3. **Confirm.** It records ``delivered`` (or ``failed`` with the error),
   fenced again, and only then moves to the next tick.

If the leader dies between 1 and 3, the next leader finds the tick still
``sending``: it cannot know whether it arrived, so it delivers it again
with the same key, and the receiving node answers a repeat from its
idempotency memory instead of running it twice. That memory is per node
and in memory (10,000 keys, 5 minutes by default): the promise holds while
the node that received the tick lives. A capability target is asked with
``consistent_hash`` on the key, so a repeat goes to the same holder while
it lives; if that node died too, the repeat runs on another holder. One
tick is in flight per schedule; late ticks are fired in order.

Threads: the loop (``taskmesh-scheduler``) does every etcd write;
deliveries block on a small pool (``taskmesh-schedule_N``); definitions
come from a watch (``taskmesh-watch:schedules``); leadership callbacks come
from the election's threads and only set the fence and wake the loop.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from taskmesh.actors.deadletters import DeadLetters
from taskmesh.cluster.election import Fence
from taskmesh.cluster.etcd import Compare, EtcdClient, KeyValue, PrefixWatch, Put, WatchEvent
from taskmesh.errors import (
    ActorNotFound,
    AskTimeout,
    ClusterError,
    ConfigError,
    EtcdUnavailable,
    FencingError,
    MailboxFull,
    PeerUnreachable,
    RemoteError,
    TaskmeshError,
)

from .misfire import plan
from .records import PlatformKeys, decode, encode
from .schedules import Schedule
from .triggers import tick_id

__all__ = ["Deliver", "Scheduler"]

log = logging.getLogger("taskmesh.schedules")

Deliver = Callable[[Schedule, float], Any]
"""``deliver(schedule, due)``: ask the schedule's target with the tick's
payload and idempotency key, and return the answer (a pool thread)."""


class _Stale(Exception):
    """The cached state of a schedule is stale: re-read every state."""


class Scheduler:
    """Fires due ticks while this node leads (see the module docstring)."""

    def __init__(
        self,
        *,
        client: EtcdClient,
        keys: PlatformKeys,
        deliver: Deliver,
        dead_letters: DeadLetters,
        clock: Callable[[], float] = time.time,
        workers: int = 4,
    ) -> None:
        self._client = client
        self._keys = keys
        self._deliver = deliver
        self._dead_letters = dead_letters
        self._clock = clock
        self._lock = threading.Lock()
        self._definitions: dict[str, Schedule] = {}
        self._fence: Fence | None = None
        self._wake = threading.Event()
        self._halt = threading.Event()
        self._thread: threading.Thread | None = None
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="taskmesh-schedule")
        self._outcomes: deque[tuple[str, str, str, str]] = deque()
        # The loop thread's own:
        self._states: dict[str, tuple[dict[str, Any], int]] = {}
        self._loaded_for: Fence | None = None
        self._inflight: dict[str, str] = {}
        self._watch = PrefixWatch(
            client, keys.schedules, on_reset=self._reset, on_event=self._event, name="schedules"
        )

    # --- lifecycle (caller's thread) ------------------------------------------

    def start(self, *, timeout: float = 10.0) -> Scheduler:
        self._watch.start(wait=timeout)
        self._thread = threading.Thread(target=self._run, name="taskmesh-scheduler", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._halt.set()
        self._wake.set()
        self._watch.stop()
        if self._thread is not None:
            self._thread.join(10.0)
        self._pool.shutdown(wait=False, cancel_futures=True)

    # --- leadership (election threads) -----------------------------------------

    def elected(self, fence: Fence) -> None:
        """This node leads: start firing, under ``fence``."""
        self._fence = fence
        self._wake.set()

    def demoted(self) -> None:
        """This node no longer leads: stop firing at once."""
        self._fence = None
        self._wake.set()

    # --- definitions (watch thread) -------------------------------------------

    def _reset(self, kvs: list[KeyValue], revision: int) -> None:
        definitions = {}
        for kv in kvs:
            schedule = self._parse(kv)
            if schedule is not None:
                definitions[schedule.name] = schedule
        with self._lock:
            self._definitions = definitions
        self._wake.set()

    def _event(self, event: WatchEvent) -> None:
        name = PlatformKeys.tail(self._keys.schedules, event.kv.key)
        schedule = self._parse(event.kv) if event.kind == "put" else None
        with self._lock:
            if schedule is None:
                self._definitions.pop(name, None)
            else:
                self._definitions[name] = schedule
        self._wake.set()

    def _parse(self, kv: KeyValue) -> Schedule | None:
        name = PlatformKeys.tail(self._keys.schedules, kv.key)
        try:
            return Schedule.from_record(name, decode(kv.value))
        except (ConfigError, TaskmeshError) as error:
            log.error("schedule %r in etcd is not valid and is not fired: %s", name, error)
            return None

    # --- the loop (taskmesh-scheduler) --------------------------------------

    def _run(self) -> None:
        wait: float | None = None
        while not self._halt.is_set():
            self._wake.wait(wait)
            self._wake.clear()
            if self._halt.is_set():
                return
            fence = self._fence
            if fence is None:
                self._loaded_for = None
                wait = None
                continue
            try:
                wait = self._step(fence)
            except FencingError:
                log.info("schedules: no longer the leader; firing stops")
                if self._fence is fence:
                    self._fence = None
                wait = None
            except _Stale:
                self._loaded_for = None
                wait = 0.0
            except ClusterError as error:
                # etcd out of reach is said once, by the etcd client: retries
                # every 0.5 s must not add a line each (docs/operations.md).
                level = logging.DEBUG if isinstance(error, EtcdUnavailable) else logging.WARNING
                log.log(level, "schedules: etcd call failed, trying again: %s", error)
                self._loaded_for = None
                wait = 0.5
            except Exception:
                log.exception("schedules: the scheduler loop failed, trying again")
                self._loaded_for = None
                wait = 1.0

    def _step(self, fence: Fence) -> float | None:
        """Record outcomes and fire what is due; returns seconds to sleep."""
        if self._loaded_for is not fence:
            kvs, _ = self._client.get_prefix(self._keys.schedule_states)
            self._states = {
                PlatformKeys.tail(self._keys.schedule_states, kv.key): (
                    decode(kv.value),
                    kv.mod_revision,
                )
                for kv in kvs
            }
            self._loaded_for = fence
        while self._outcomes:
            self._record_outcome(fence, *self._outcomes.popleft())
        with self._lock:
            definitions = dict(self._definitions)
        wake: float | None = None
        now = self._clock()
        for name, schedule in sorted(definitions.items()):
            if name in self._inflight:
                continue
            state = self._states.get(name, ({}, 0))[0]
            if state.get("status") == "sending":
                # Fired by us or an earlier leader and not confirmed: it may or
                # may not have arrived. Deliver it again, under the same key.
                self._send(schedule, float(state["due"]))
                continue
            step = plan(
                schedule.trigger(), schedule.policy(), last=state.get("due"),
                start=schedule.start or 0.0, now=now, grace=schedule.misfire_grace,
            )  # fmt: skip
            if step.dropped:
                self._drop(fence, schedule, state, step.dropped, step.dropped_until, step.fire)
            if step.fire is not None:
                self._write(fence, name, {
                    **self._counters(state),
                    "tick": tick_id(step.fire), "due": step.fire, "status": "sending",
                    "token": fence.token, "fired_at": now,
                    "dropped": int(state.get("dropped", 0)) + step.dropped,
                })  # fmt: skip
                self._send(schedule, step.fire)
            elif step.dropped:
                wake = now  # look again at once: the next tick may be due
            elif step.wake is not None:
                wake = step.wake if wake is None else min(wake, step.wake)
        return None if wake is None else max(0.0, wake - self._clock())

    def _drop(
        self,
        fence: Fence,
        schedule: Schedule,
        state: dict[str, Any],
        dropped: int,
        until: float | None,
        fired: float | None,
    ) -> None:
        what = f"run once as {tick_id(fired)}" if fired is not None else "skipped"
        log.warning(
            "schedule %r: %d tick(s) misfired (later than %g s) and were not fired: %s",
            schedule.name, dropped, schedule.misfire_grace, what,
        )  # fmt: skip
        self._dead_letters.record(
            schedule.to, schedule.message, "misfired",
            f"schedule {schedule.name!r}: {dropped} tick(s) not fired ({schedule.misfire})",
        )  # fmt: skip
        if fired is None and until is not None:
            self._write(fence, schedule.name, {
                **self._counters(state),
                "tick": tick_id(until), "due": until, "status": "skipped", "token": fence.token,
                "fired_at": self._clock(), "dropped": int(state.get("dropped", 0)) + dropped,
            })  # fmt: skip

    @staticmethod
    def _counters(state: dict[str, Any]) -> dict[str, Any]:
        return {
            "delivered": int(state.get("delivered", 0)),
            "dropped": int(state.get("dropped", 0)),
        }

    def _write(self, fence: Fence, name: str, record: dict[str, Any]) -> None:
        """Record a schedule's state, only while leading, only over the state
        we know, and only while the schedule still exists."""
        key = self._keys.schedule_state(name)
        known = self._states.get(name, ({}, 0))[1]
        result = fence.txn(
            [Put(key, encode(record, what=f"the state of schedule {name!r}"))],
            compare=[
                Compare(key, "mod", "==", known),
                Compare(self._keys.schedule(name), "create", ">", 0),
            ],
        )
        if not result.succeeded:
            raise _Stale(name)
        self._states[name] = (record, result.revision)

    # --- deliveries ---------------------------------------------------------

    def _send(self, schedule: Schedule, due: float) -> None:
        tick = tick_id(due)
        self._inflight[schedule.name] = tick
        self._pool.submit(self._deliver_one, schedule, due, tick)

    def _deliver_one(self, schedule: Schedule, due: float, tick: str) -> None:
        """A pool thread: deliver one tick, then hand the outcome to the loop."""
        status, error = "delivered", ""
        try:
            self._deliver(schedule, due)
        except RemoteError as failure:  # it arrived; the actor raised
            status, error = "failed", f"{failure.type_name}: {failure.message}"
        except TaskmeshError as failure:
            status, error = "undelivered", f"{type(failure).__name__}: {failure}"
            self._dead_letters.record(
                schedule.to, schedule.payload(due), _reason(failure, schedule),
                f"schedule {schedule.name!r} tick {tick}: {failure}",
            )  # fmt: skip
        except Exception as failure:
            log.exception("schedule %r: delivering tick %s failed", schedule.name, tick)
            status, error = "undelivered", f"{type(failure).__name__}: {failure}"
        self._outcomes.append((schedule.name, tick, status, error))
        self._wake.set()

    def _record_outcome(self, fence: Fence, name: str, tick: str, status: str, error: str) -> None:
        if self._inflight.get(name) == tick:
            del self._inflight[name]
        state = self._states.get(name, ({}, 0))[0]
        if state.get("tick") != tick or state.get("status") != "sending":
            return
        if status != "delivered":
            log.warning("schedule %r: tick %s %s: %s", name, tick, status, error)
        self._write(fence, name, {
            **state, "status": "delivered" if status == "delivered" else "failed",
            "error": error or None,
            "delivered": int(state.get("delivered", 0)) + (status != "undelivered"),
        })  # fmt: skip


def _reason(error: TaskmeshError, schedule: Schedule) -> str:
    """The dead-letter reason for an undelivered tick."""
    if isinstance(error, ActorNotFound):
        return "no_route" if schedule.capability else "actor_not_found"
    if isinstance(error, MailboxFull):
        return "mailbox_full"
    if isinstance(error, PeerUnreachable):
        return "peer_unreachable"
    if isinstance(error, AskTimeout):
        return "ask_timeout"
    return "undeliverable"
