"""Flow control between nodes: a full mailbox slows its remote senders down.

Credit per destination actor (per type for entities: see :func:`flow_key`). A sender may have ``window`` tells to one
actor that the receiving node has not yet taken (``Sender.tell`` takes a
ticket per tell and waits, within its send timeout, while its tickets run
ahead of the credit granted). The receiving node grants credit back as it
hands tells to the actor's mailbox, in ``CREDIT`` envelopes of up to
``CREDIT_BATCH`` tells (and what is left over at every heartbeat tick).

When a mailbox is full, the receiving node does not drop what comes: it
parks it, in arrival order, and grants no credit for it; the mailbox tells
it when it has drained to half (``on_space``), and the parked messages go
in then. So a slow actor costs its senders their window, and nothing
else: the I/O thread never blocks, other actors and heartbeats go on, and
memory stays bounded (at most ``window`` parked tells per sender and actor).
Asks take no credit (their asker waits for the answer anyway); one that
finds the mailbox full is parked too, behind what waits, within its own
deadline. Every parked message leaves the park in order, also when the
actor is gone (then as a dead letter or an ``ActorNotFound`` answer).

:class:`Inflow` is the receiving half; it runs on the I/O thread, which
holds the router's lock, except :meth:`Inflow.wake`, which the mailbox's
consumer calls.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Final

from taskmesh.actors.future import ReplyTo
from taskmesh.errors import ActorNotFound, MailboxFull
from taskmesh.transport.envelope import CREDIT, encode_envelope

if TYPE_CHECKING:
    from taskmesh.transport.outbox import Outbox
    from taskmesh.transport.router import Router

__all__ = ["CREDIT_BATCH", "Deliver", "Inflow", "Room", "flow_key"]

CREDIT_BATCH: Final = 64
"""Tells credited back in one CREDIT envelope (a sender's window is larger)."""


def flow_key(target: str) -> str:
    """What credit is counted per: the actor's name, or for an entity target
    (``~type/token/id``) its type. Entity ids are unbounded over a node's life
    and their messages never park (a full entity refuses), so credit per id
    would only grow both sides' tables; per type it still paces a flood."""
    if target[0] != "~":
        return target
    cut = target.find("/")
    return target if cut < 0 else target[:cut]


Deliver = Callable[..., bool | None]
"""``deliver(target, message, reply, deadline[, idempotency_key])``: hand an
inbound message to the local actors. Runs on the I/O thread; must only
enqueue, never block. Returns False, having taken nothing, when the actor's
mailbox is full (the transport parks the message: see ``flow``); otherwise
it has taken the message. Raises ActorNotFound for an ask to no such actor;
for a tell it records dead letters itself. The fifth argument is passed only
for an ask sent with an idempotency key."""

Room = Callable[[str, Callable[[], None]], bool]
"""``room(actor, callback)``: call ``callback()`` once the actor's mailbox has
room again; False (and no call) when it has room now or no such actor lives
(``ActorSystem.on_space``)."""

# A parked message: (asker identity, sender address, target, payload, reply, deadline, key)
Parked = tuple[bytes, str, str, Any, ReplyTo | None, float | None, str | None]


class Inflow:
    """Parks what a full mailbox cannot take and grants credit for the rest."""

    def __init__(
        self,
        outbox: Outbox,
        deliver: Deliver,
        room: Room | None,
        *,
        max_parked: int,
        max_message_size: int,
    ) -> None:
        self.outbox = outbox
        self.deliver = deliver
        self.room = room
        self.max_parked = max_parked
        self.max_message_size = max_message_size
        self.owed: dict[bytes, dict[str, int]] = {}  # tells taken, not yet credited
        self.parked: dict[str, deque[Parked]] = {}
        self.roomy: deque[str] = deque()  # actors whose mailbox has room again (any thread)
        self.watching: set[str] = set()  # actors whose mailbox will say when it has room

    # --- the I/O thread ------------------------------------------------------------

    def tell(self, router: Router, identity: bytes, sender: str, target: str, payload: Any) -> None:
        """Hand one tell to ``deliver``, or park it behind what waits."""
        if target in self.parked:
            self._park(router, (identity, sender, target, payload, None, None, None))
            return
        try:
            taken = self.deliver(target, payload, None, None)
        except Exception as exc:
            self.outbox.dead_letter(f"{sender}/{target}", payload, "deliver_failed", repr(exc))
            taken = True
        if taken is False:
            self._park(router, (identity, sender, target, payload, None, None, None))
        else:
            self._credit(router, identity, target)

    def ask(
        self,
        router: Router,
        identity: bytes,
        sender: str,
        target: str,
        payload: Any,
        reply: ReplyTo,
        deadline: float | None,
        key: str | None,
    ) -> None:
        """Hand one ask to ``deliver``, or park it behind what waits."""
        item: Parked = (identity, sender, target, payload, reply, deadline, key)
        if target in self.parked or self._deliver(item) is False:
            self._park(router, item)

    def _deliver(self, item: Parked) -> bool | None:
        """``deliver`` one message; False if the mailbox is full (not taken)."""
        _, sender, target, payload, reply, deadline, key = item
        try:
            if reply is None:
                return self.deliver(target, payload, None, None)
            if key is None:
                return self.deliver(target, payload, reply, deadline)
            return self.deliver(target, payload, reply, deadline, key)
        except (ActorNotFound, MailboxFull) as exc:
            if reply is not None:
                reply.fail(exc)
        except Exception as exc:
            if reply is not None:
                reply.fail(exc)
            else:
                self.outbox.dead_letter(f"{sender}/{target}", payload, "deliver_failed", repr(exc))
        return None

    def _park(self, router: Router, item: Parked) -> None:
        target = item[2]
        waiting = self.parked.get(target)
        if waiting is None:
            waiting = self.parked[target] = deque()
            self._watch(target)
        if len(waiting) >= self.max_parked:
            # A sender without a window (or a flood of asks): refuse, visibly.
            identity, sender, _, payload, reply, _, _ = item
            if reply is not None:
                reply.fail(MailboxFull(f"mailbox of {target!r} is full and {len(waiting)} wait"))
            else:
                self.outbox.dead_letter(
                    f"{sender}/{target}", payload, "mailbox_full",
                    f"{len(waiting)} messages already wait for room",
                )  # fmt: skip
                self._credit(router, identity, target)
            return
        waiting.append(item)

    def _watch(self, target: str) -> None:
        """Ask the mailbox to say when it has room (once); if it has room
        already (or the actor is gone), look again at once."""
        if target in self.watching:
            return
        room = self.room
        if room is not None and room(target, lambda: self.wake(target)):
            self.watching.add(target)
        else:
            self.roomy.append(target)

    def wake(self, target: str) -> None:
        """The mailbox of ``target`` has room again, or its actor stopped (the
        consumer's thread): let the I/O thread move what is parked."""
        self.watching.discard(target)
        self.roomy.append(target)
        self.outbox.wake()

    def unpark(self, router: Router) -> None:
        """Move parked messages into the mailboxes that have room again, in
        order, until one is full again (I/O thread)."""
        roomy = self.roomy
        while roomy:
            target = roomy.popleft()
            waiting = self.parked.get(target)
            if waiting is None:
                continue
            while waiting:
                item = waiting[0]
                if self._deliver(item) is False:
                    self._watch(target)
                    break
                waiting.popleft()
                if item[4] is None:
                    self._credit(router, item[0], target)
            else:
                del self.parked[target]

    def _credit(self, router: Router, identity: bytes, target: str) -> None:
        if target[0] == "~":
            target = flow_key(target)
        owed = self.owed.get(identity)
        if owed is None:
            owed = self.owed[identity] = {}
        n = owed.get(target, 0) + 1
        if n >= CREDIT_BATCH:
            owed[target] = 0
            router.queue.append((identity, self._grant(target, n), 0))
        else:
            owed[target] = n

    def _grant(self, target: str, n: int) -> bytes:
        return encode_envelope(CREDIT, target, n, None, None, self.max_message_size)

    def tick(self, router: Router) -> None:
        """Every heartbeat tick: grant what is owed in part (so that a sender's
        link goes quiet at rest), and look again at every park nobody watches."""
        for identity, owed in self.owed.items():
            for target, n in owed.items():
                if n:
                    router.queue.append((identity, self._grant(target, n), 0))
            owed.clear()  # all granted: the table holds only what is owed
        self.roomy.extend(t for t in self.parked if t not in self.watching)

    def forget(self, identity: bytes) -> None:
        """A sender went away: nothing is owed to it any more."""
        self.owed.pop(identity, None)
