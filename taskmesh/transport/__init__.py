"""taskmesh.transport: the brokerless ZeroMQ mesh between processes.

A :class:`Transport` per node owns one I/O thread and every ZeroMQ socket;
:meth:`Transport.ref` gives a :class:`RemoteRef` that tells and asks an
actor in another process like a local ``ActorRef``. See ``envelope`` for
the wire format and ``security`` for CURVE keys.
"""

from __future__ import annotations

from taskmesh.transport.ref import RemoteRef
from taskmesh.transport.security import CurveKeys, keygen, load_public_key
from taskmesh.transport.transport import DeadLetterCallback, Deliver, PeerListener, Transport

__all__ = [
    "CurveKeys",
    "DeadLetterCallback",
    "Deliver",
    "PeerListener",
    "RemoteRef",
    "Transport",
    "keygen",
    "load_public_key",
]
