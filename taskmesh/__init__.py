"""taskmesh: supervised actor trees across machines, with no broker.

The user-facing names are re-exported here; see ``__all__``.
"""

from __future__ import annotations

import logging

from taskmesh.actors import (
    Actor,
    ActorRef,
    ActorSystem,
    Backoff,
    Child,
    DeadLetter,
    Supervisor,
    Terminated,
)
from taskmesh.client import Client, connect
from taskmesh.entities import Entity, EntityRef, EtcdStore, PostgresStore, StateStore
from taskmesh.errors import (
    ActorNotFound,
    AskTimeout,
    ConfigError,
    InvalidMessage,
    InvalidName,
    LimitTimeout,
    MailboxFull,
    MessageTooLarge,
    NameTaken,
    PeerUnreachable,
    RemoteError,
    RestartIntensityExceeded,
    StaleActivation,
    StateTooLarge,
    TaskmeshError,
    WorkflowFailed,
    WorkflowNotFound,
    WorkflowTimeout,
)
from taskmesh.node import Node
from taskmesh.platform import chain, chord, group, step

__version__ = "0.1.0"

__all__ = [
    "Actor",
    "ActorNotFound",
    "ActorRef",
    "ActorSystem",
    "AskTimeout",
    "Backoff",
    "Child",
    "Client",
    "ConfigError",
    "DeadLetter",
    "Entity",
    "EntityRef",
    "EtcdStore",
    "InvalidMessage",
    "InvalidName",
    "LimitTimeout",
    "MailboxFull",
    "MessageTooLarge",
    "NameTaken",
    "Node",
    "PeerUnreachable",
    "PostgresStore",
    "RemoteError",
    "RestartIntensityExceeded",
    "StaleActivation",
    "StateStore",
    "StateTooLarge",
    "Supervisor",
    "TaskmeshError",
    "Terminated",
    "WorkflowFailed",
    "WorkflowNotFound",
    "WorkflowTimeout",
    "__version__",
    "chain",
    "chord",
    "connect",
    "group",
    "step",
]

logging.getLogger("taskmesh").addHandler(logging.NullHandler())
