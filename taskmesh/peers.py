"""Peers: how a node or a client reaches actors on other nodes.

Both turn cluster records (node, address, actor name) into transport refs
carrying the peer's CURVE server key, and both route around a peer the
transport reports suspect or down. This is that shared part.
"""

from __future__ import annotations

from taskmesh.addressing import Target
from taskmesh.cluster import ClusterMember
from taskmesh.transport import Transport

__all__ = ["Peers"]


class Peers:
    """Remote refs and route-around for one node or client; thread-safe.

    Refs are cached per (node, address, actor): a send allocates nothing
    once an actor was reached before.
    """

    def __init__(self, member: ClusterMember, transport: Transport, *, curve: bool) -> None:
        self._member = member
        self._transport = transport
        self._curve = curve
        self._node_of: dict[str, str] = {}
        self._refs: dict[tuple[str, str, str], Target] = {}

    def ref(self, node: str, address: str, name: str) -> Target:
        """A ref to actor ``name`` on ``node`` at ``address`` (caller's thread)."""
        ref = self._refs.get((node, address, name))
        if ref is not None:
            return ref
        self._node_of[address] = node
        server_key = None
        if self._curve:
            info = self._member.membership.get(node)
            if info is not None and info.public_key:
                server_key = info.public_key.encode()
        ref = self._transport.ref(address, name, server_key=server_key)
        if server_key is not None or not self._curve:  # a keyless CURVE ref may gain a key
            self._refs[(node, address, name)] = ref
        return ref

    def reachable(self, node: str) -> bool:
        """A live member the transport does not suspect (from caches)."""
        member = self._member
        return member.membership.get(node) is not None and node not in member.routing.suspects

    def on_peer_event(self, address: str, state: str) -> None:
        """Transport listener (the transport's I/O thread): route around a
        peer that is suspect or down, and back to it once it answers."""
        node = self._node_of.get(address)
        if node is None:
            return
        if state in ("suspect", "down"):
            self._member.mark_suspect(node)
        elif state == "up":
            self._member.clear_suspect(node)
