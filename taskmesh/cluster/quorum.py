"""`start_quorum`: three (or more) embedded etcd members forming one etcd cluster,
for tests and small edge deployments."""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path

from taskmesh.errors import ConfigError, EtcdUnavailable

from .embedded import _START_ATTEMPTS, EmbeddedEtcd, _Exited, _Ports, free_port

__all__ = ["Quorum", "start_quorum"]

_log = logging.getLogger("taskmesh.cluster.embedded")


class Quorum:
    """Three (or more) `EmbeddedEtcd` members forming one etcd cluster."""

    def __init__(self, members: Sequence[EmbeddedEtcd], *, root: Path | None = None) -> None:
        self.members = list(members)
        self._root = root

    @property
    def endpoints(self) -> list[str]:
        """Every member's client URL."""
        return [m.endpoint for m in self.members]

    def close(self) -> None:
        """Stop every member and remove temporary data."""
        for member in self.members:
            member.close()
        if self._root is not None:
            shutil.rmtree(self._root, ignore_errors=True)

    def __enter__(self) -> Quorum:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def start_quorum(
    size: int = 3,
    *,
    base_dir: str | os.PathLike[str] | None = None,
    binary: str | os.PathLike[str] | None = None,
    start_timeout: float = 60.0,
) -> Quorum:
    """Start ``size`` local members that form one cluster, and wait for it.

    Each member gets free client and peer ports and a data directory under
    ``base_dir`` (temporary when not given). On a port clash the whole
    quorum is started again on new ports.
    """
    if size < 1:
        raise ConfigError("a quorum needs at least one member")
    own_root = base_dir is None
    root = Path(tempfile.mkdtemp(prefix="taskmesh-q-")) if base_dir is None else Path(base_dir)
    names = [f"m{i}" for i in range(size)]
    for attempt in range(_START_ATTEMPTS):
        ports = [_Ports(free_port(), free_port()) for _ in range(size)]
        cluster = ",".join(
            f"{n}=http://127.0.0.1:{p.peer}" for n, p in zip(names, ports, strict=True)
        )
        members = [
            EmbeddedEtcd(
                data_dir=root / f"{names[i]}-{attempt}",
                binary=binary,
                name=names[i],
                client_port=ports[i].client,
                peer_port=ports[i].peer,
                initial_cluster=cluster,
                start_timeout=start_timeout,
            )
            for i in range(size)
        ]
        quorum = Quorum(members, root=root if own_root else None)
        try:
            for member in members:
                member.start(wait=False)
            for member in members:
                member.wait_healthy(start_timeout)
            return quorum
        except _Exited as exc:
            _log.warning("quorum start failed (attempt %d): %s", attempt + 1, exc)
            for member in members:
                member.stop()
        except BaseException:
            quorum.close()
            raise
    if own_root:
        shutil.rmtree(root, ignore_errors=True)
    raise EtcdUnavailable("could not start an etcd quorum")
