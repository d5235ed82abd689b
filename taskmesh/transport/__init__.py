"""taskmesh.transport: the brokerless ZeroMQ mesh between processes.

How a message travels. A caller holds a :class:`RemoteRef` (made by
:meth:`Transport.ref`, or by the node's resolver for ``node.ref(name)``)
and calls ``tell`` or ``ask``. The :class:`~.sender.Sender` encodes the
envelope in the caller's thread (``envelope``), appends it to the peer's
:class:`~.link.Link` queue in the shared :class:`~.outbox.Outbox` and
wakes the I/O thread (``iothread``), unless a wake-up is pending already.
The I/O thread joins everything queued for a peer into one frame and sends
it on the link's DEALER (``outbound``). A sync ask skips that hand-off: it
borrows the link's socket, sends the queue and its ask itself, and waits
on the socket for its answer (``lead``).

On the peer, the I/O thread reads the frame from its ROUTER (``inbound``)
and hands each message to the node's actors (``deliver``: a mailbox, or
an inline actor run at once). The actor's answer goes into an
``InboundReply``; its thread sends it back on the ROUTER itself when the
socket is free, else queues it for the I/O thread (``router``). Back here,
whoever holds the link's socket (the waiting asker, or the I/O thread)
reads the answer and hands it to the asker's future. Heartbeats, link
states and suspicion live in ``liveness``; CURVE keys in ``security``.
"""

from __future__ import annotations

from taskmesh.transport.flow import Deliver, Room
from taskmesh.transport.outbox import DeadLetterSink, PeerListener
from taskmesh.transport.ref import RemoteRef
from taskmesh.transport.security import CurveKeys, keygen, load_public_key
from taskmesh.transport.transport import Transport

__all__ = [
    "CurveKeys",
    "DeadLetterSink",
    "Deliver",
    "PeerListener",
    "RemoteRef",
    "Room",
    "Transport",
    "keygen",
    "load_public_key",
]
