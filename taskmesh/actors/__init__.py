"""The local actor runtime: actors (threaded and async), refs, mailboxes and
flow control, supervisors, timers."""

from __future__ import annotations

from taskmesh.actors.actor import Actor
from taskmesh.actors.deadletters import DeadLetter, DeadLetters
from taskmesh.actors.future import Reply, ReplyTo
from taskmesh.actors.messages import Terminated
from taskmesh.actors.names import validate_capability, validate_name
from taskmesh.actors.ref import ActorRef
from taskmesh.actors.supervisor import Backoff, Child, Supervisor
from taskmesh.actors.system import ActorInfo, ActorSystem
from taskmesh.actors.timers import Timers

__all__ = [
    "Actor",
    "ActorInfo",
    "ActorRef",
    "ActorSystem",
    "Backoff",
    "Child",
    "DeadLetter",
    "DeadLetters",
    "Reply",
    "ReplyTo",
    "Supervisor",
    "Terminated",
    "Timers",
    "validate_capability",
    "validate_name",
]
