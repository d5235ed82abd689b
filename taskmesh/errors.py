"""The one error tree of taskmesh.

Every error taskmesh raises derives from :class:`TaskmeshError`, with one
branch per layer (actors, transport, cluster, configuration). Each docstring
says when the error is raised and what to do about it.
"""

from __future__ import annotations

__all__ = [
    "ActorError",
    "ActorNotFound",
    "AskTimeout",
    "ClusterError",
    "ConfigError",
    "EntityError",
    "EtcdUnavailable",
    "FencingError",
    "InvalidMessage",
    "InvalidName",
    "LeaseLost",
    "LimitTimeout",
    "MailboxFull",
    "MalformedFrame",
    "MessageTooLarge",
    "NameTaken",
    "PeerUnreachable",
    "RemoteError",
    "RestartIntensityExceeded",
    "StaleActivation",
    "StateTooLarge",
    "TaskmeshError",
    "TransportError",
    "WorkflowError",
    "WorkflowFailed",
    "WorkflowNotFound",
    "WorkflowTimeout",
]


class TaskmeshError(Exception):
    """Root of every error taskmesh raises; catch it to handle them all."""


class ConfigError(TaskmeshError):
    """A setting, flag or argument is invalid.

    Raised at start-up or at the call that received the bad value; the
    message names the setting. Fix the value and try again.
    """


# --- actors -----------------------------------------------------------------


class ActorError(TaskmeshError):
    """Base of the errors raised by the actor layer."""


class InvalidName(ActorError, ValueError):
    """An actor name or capability is not valid.

    Names are 1-128 characters from letters, digits and ``_ . : - @``, and
    start with a letter, digit or underscore. Pick a valid name.
    """


class NameTaken(ActorError):
    """``spawn(name=...)`` was given a name another live actor holds.

    Names are unique. Stop the holder first, pick another name, or use
    get-or-create semantics where the API offers them.
    """


class ActorNotFound(ActorError, LookupError):
    """No live actor holds the name, or the actor stopped before answering.

    Raised by ``ref(name)`` for an unknown name and by ``ask`` when the
    target is gone. The message may be retried once the actor exists again.
    """


class MailboxFull(ActorError):
    """The target's bounded mailbox stayed full: no room came within the
    send timeout (a tell; the message is also a ``mailbox_full`` dead
    letter) or the ask's timeout, or the sender is a thread that must not
    wait (an event loop, the transport's I/O thread).

    This is backpressure: the receiver is slower than its senders. Slow
    down, raise ``send_timeout`` or the mailbox size, or in async code use
    ``await ref.tell_async(...)``, which waits without blocking the loop.
    """


class AskTimeout(ActorError, TimeoutError):
    """No reply arrived within the ask's timeout.

    The message may or may not have been processed. Use ``retries`` with an
    ``idempotency_key`` where the effect must happen once.
    """


class LimitTimeout(AskTimeout):
    """No token of the capability's cluster-wide limit (``node.set_limit``)
    came within the ask's timeout, or the tell's send timeout.

    The message was not sent (a tell's is a ``limited`` dead letter), so it
    is safe to send again. The capability is busier than its limit allows:
    wait longer (a larger timeout), send less, or raise the limit.
    """


class RestartIntensityExceeded(ActorError):
    """A supervisor's children failed more than ``max_restarts`` times within
    ``within`` seconds.

    The supervisor stops its children and fails in turn, escalating to its
    parent; at the root the tree is stopped and the node is told. Fix the
    crashing child, or widen the intensity if the failures are expected.
    """


# --- transport --------------------------------------------------------------


class TransportError(TaskmeshError):
    """Base of the errors raised by the ZeroMQ transport."""


class InvalidMessage(TransportError, TypeError):
    """The message holds a value msgpack cannot encode.

    Messages are msgpack values: None, bool, int, float, str, bytes, list
    and dict. Convert other values (dataclasses, sets, datetimes) first.
    """


class MessageTooLarge(TransportError):
    """The encoded message is bigger than the configured maximum size.

    Raised at the sender; nothing was sent. Send a reference to the data
    (a path, a key) instead, or raise the size limit on every node.
    """


class MalformedFrame(TransportError):
    """An inbound frame could not be decoded as a taskmesh envelope.

    The transport drops such frames, counts them and logs them at a limited
    rate; user code sees this only from the codec's own functions.
    """


class PeerUnreachable(TransportError):
    """The peer that holds the target cannot be reached now.

    Raised fast by ``ask`` when the failure is known (peer gone, not
    connected, its queue full) instead of waiting for the timeout.
    """


class RemoteError(TransportError):
    """The remote actor raised an exception while handling an ask.

    ``type_name``, ``message`` and ``traceback`` carry the remote
    exception's type name, text and formatted traceback.
    """

    def __init__(self, type_name: str, message: str, traceback: str = "") -> None:
        super().__init__(f"{type_name}: {message}")
        self.type_name = type_name
        self.message = message
        self.traceback = traceback


# --- cluster ----------------------------------------------------------------


class ClusterError(TaskmeshError):
    """Base of the errors raised by the etcd cluster layer."""


class EtcdUnavailable(ClusterError):
    """No configured etcd endpoint answered.

    Nodes keep serving from their caches meanwhile and re-register when etcd
    returns. Check the endpoints, the network, and etcd's own health.
    """


class NodeNameTaken(ClusterError):
    """Another live node runs under this node's name (``--name``).

    Names of nodes are identities: a second node with the same name while the
    first one's lease lives is refused. Pick another name, or stop the other.
    """


class LeaseLost(ClusterError):
    """This node's etcd lease expired, so its registrations are gone.

    The node re-registers with a new lease when etcd answers again.
    """


class FencingError(ClusterError):
    """A leader-only write was refused because this node no longer leads.

    The fencing token (the leader key's revision) did not match; another
    node leads now. Leader duties stop at once; nothing needs doing.
    """


# --- entities -----------------------------------------------------------------


class EntityError(TaskmeshError):
    """Base of the errors about sharded entities (``node.host``, ``node.entity``)."""


class StaleActivation(EntityError):
    """An entity's ``save()`` was refused: its activation no longer owns the
    entity's shard (the shard moved, or this node lost its etcd lease), so
    another activation may exist. Raised in the entity; the asker gets it as
    the ask's error. Nothing was written; the entity is stopped and the next
    message reaches the current owner."""


class StateTooLarge(EntityError):
    """An entity's state is larger than its store takes (``max_state_size``;
    1 MiB for the etcd store). Raised by ``save()``; nothing was written.
    Keep less state, or use the PostgreSQL store."""


# --- platform (schedules, workflows) ------------------------------------------


class WorkflowError(TaskmeshError):
    """Base of the errors about workflows (``client.run``, ``client.result``)."""


class WorkflowFailed(WorkflowError):
    """A step of the workflow failed, so the workflow did.

    ``type_name``, ``message`` and ``traceback`` describe the step's error
    (the remote exception, as in :class:`RemoteError`, or ``AskTimeout``,
    ``ActorNotFound``, ``MessageTooLarge``...); ``step`` is its number and
    ``target`` its actor or capability; ``handler`` the ``on_error``
    step's outcome (``{"ok": value}`` or ``{"error": {...}}``), if one ran.
    """

    def __init__(
        self,
        workflow_id: str,
        type_name: str,
        message: str,
        *,
        traceback: str = "",
        step: int | None = None,
        target: str | None = None,
        handler: dict[str, object] | None = None,
    ) -> None:
        where = f" at step {step} ({target})" if step is not None else ""
        super().__init__(f"workflow {workflow_id} failed{where}: {type_name}: {message}")
        self.workflow_id = workflow_id
        self.type_name = type_name
        self.message = message
        self.traceback = traceback
        self.step = step
        self.target = target
        self.handler = handler


class WorkflowTimeout(WorkflowError, TimeoutError):
    """The workflow had not finished when the caller stopped waiting.

    It goes on in the cluster: fetch its outcome later with
    ``client.result(error.workflow_id)``.
    """

    def __init__(self, workflow_id: str, timeout: float) -> None:
        super().__init__(
            f"workflow {workflow_id} has not finished within {timeout:g} s; it goes on in "
            f"the cluster: client.result({workflow_id!r}) fetches its outcome later"
        )
        self.workflow_id = workflow_id


class WorkflowNotFound(WorkflowError, LookupError):
    """No workflow has this id: it never existed, or it finished longer ago
    than its coordinator keeps outcomes (a day by default)."""
