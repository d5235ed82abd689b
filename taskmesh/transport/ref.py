"""References to actors in other processes."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from taskmesh.actors.future import Reply
    from taskmesh.transport.link import Link
    from taskmesh.transport.transport import Transport

__all__ = ["RemoteRef"]


class RemoteRef:
    """Actor ``name`` on the peer at ``address``; used like a local ActorRef.

    Safe to share between threads; every method runs in the caller's
    thread and only hands the encoded message to the transport's I/O
    thread. Messages from one process to one actor arrive in send order.
    """

    __slots__ = ("_link", "_transport", "name")

    def __init__(self, transport: Transport, link: Link, name: str) -> None:
        self._transport = transport
        self._link = link
        self.name = name

    @property
    def address(self) -> str:
        """The peer's transport address."""
        return self._link.address

    def tell(self, message: Any) -> None:
        """Send without waiting (at most once).

        Raises InvalidMessage or MessageTooLarge at once; a message that
        cannot be delivered later becomes a dead letter.
        """
        self._transport._tell(self._link, self.name, message)

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
        return self._transport._ask_sync(self._link, self.name, message, timeout, idempotency_key)

    def ask_async(
        self, message: Any, *, timeout: float | None = None, idempotency_key: str | None = None
    ) -> Reply:
        """Send and return a future at once; ``get()`` it later.

        Many asks can be in flight at once (pipelining). The transport fails
        the future with AskTimeout once ``timeout`` has passed.
        """
        return self._transport._ask(self._link, self.name, message, timeout, idempotency_key)[1]

    def __repr__(self) -> str:
        return f"RemoteRef({self._link.address!r}, {self.name!r})"

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, RemoteRef) and other._link is self._link and other.name == self.name
        )

    def __hash__(self) -> int:
        return hash((self._link.address, self.name))
