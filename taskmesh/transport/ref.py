"""References to actors in other processes."""

from __future__ import annotations

from typing import Any

from taskmesh.actors.future import Reply
from taskmesh.transport.link import Link
from taskmesh.transport.sender import Sender

__all__ = ["RemoteRef"]


class RemoteRef:
    """Actor ``name`` on the peer at ``address``; used like a local ActorRef.

    Safe to share between threads; every method runs in the caller's
    thread. Messages from one thread to one actor arrive in send order.
    """

    __slots__ = ("_link", "_sender", "name")

    def __init__(self, sender: Sender, link: Link, name: str) -> None:
        self._sender = sender
        self._link = link
        self.name = name

    @property
    def address(self) -> str:
        """The peer's transport address."""
        return self._link.address

    def tell(self, message: Any, *, block: bool = True) -> None:
        """Send (at most once); returns once the message is queued.

        Raises InvalidMessage or MessageTooLarge at once. When the actor's
        mailbox on the other node is full, the peer grants no more credit
        and this waits for room within the send timeout, then records a
        ``mailbox_full`` dead letter and raises MailboxFull; ``block=False``
        records the dead letter at once instead. A message that cannot be
        delivered later becomes a dead letter.
        """
        self._sender.tell(self._link, self.name, message, block)

    async def tell_async(self, message: Any) -> None:
        """:meth:`tell` from a coroutine: waiting for room suspends the
        coroutine, not the event loop."""
        await self._sender.tell_async(self._link, self.name, message)

    def ask(
        self, message: Any, *, timeout: float | None = None, idempotency_key: str | None = None
    ) -> Any:
        """Send and wait for the answer.

        Raises AskTimeout, ActorNotFound, MailboxFull, RemoteError (the
        remote exception's type name, message and traceback), or
        PeerUnreachable as soon as the peer is known to be gone. The
        ``idempotency_key`` travels with the ask: the receiving node answers
        a repeat of a recent key from memory.
        """
        return self._sender.ask_sync(self._link, self.name, message, timeout, idempotency_key)

    def ask_async(
        self, message: Any, *, timeout: float | None = None, idempotency_key: str | None = None
    ) -> Reply:
        """Send and return a future at once; ``get()`` it later.

        Many asks can be in flight at once (pipelining). The transport fails
        the future with AskTimeout once ``timeout`` has passed.
        """
        return self._sender.ask(self._link, self.name, message, timeout, idempotency_key)

    def begin_ask(
        self, message: Any, *, timeout: float | None = None, idempotency_key: str | None = None
    ) -> Reply:
        """Start an ask the caller waits for at once (the fast path of a
        sync ask): the answer is usually in the returned future already."""
        return self._sender.begin_ask(self._link, self.name, message, timeout, idempotency_key)

    def __repr__(self) -> str:
        return f"RemoteRef({self._link.address!r}, {self.name!r})"

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, RemoteRef) and other._link is self._link and other.name == self.name
        )

    def __hash__(self) -> int:
        return hash((self._link.address, self.name))
