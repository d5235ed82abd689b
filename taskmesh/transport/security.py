"""CURVE security: key pairs, key files and the set of authorized keys.

When a transport is given a :class:`CurveKeys`, its inbound ROUTER is a
CURVE server that accepts only clients whose public key is in the
authorized directory (checked by ZeroMQ's ZAP handler, run by
``zmq.auth.ThreadAuthenticator`` in a thread of its own), and every
outbound link authenticates with the node's own key pair. A peer with an
unknown key completes no handshake, so it can deliver nothing.

:func:`keygen` writes a key pair as ZeroMQ certificate files; it backs the
``taskmesh keygen DIR`` command.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import zmq
import zmq.auth
import zmq.auth.thread

from taskmesh.errors import ConfigError

__all__ = ["Authenticator", "CurveKeys", "keygen", "load_keys", "load_public_key"]

log = logging.getLogger("taskmesh.transport")


def keygen(directory: str | Path, name: str = "node") -> tuple[Path, Path]:
    """Create a CURVE key pair in ``directory``: ``NAME.key`` (public, share
    it: copy it into the authorized directory of the nodes this one talks
    to) and ``NAME.key_secret`` (secret, keep it on this machine).

    Returns ``(public_path, secret_path)``. Raises :class:`ConfigError` if
    the files exist already, so a key is never overwritten by accident.
    """
    if not zmq.has("curve"):
        raise ConfigError("this libzmq was built without CURVE support")
    if not name or "/" in name or name.startswith("."):
        raise ConfigError(f"invalid key name {name!r}")
    path = Path(directory)
    path.mkdir(parents=True, exist_ok=True)
    for suffix in (".key", ".key_secret"):
        if (path / f"{name}{suffix}").exists():
            raise ConfigError(f"{path / (name + suffix)} exists already; not overwriting it")
    public, secret = zmq.auth.create_certificates(str(path), name)
    Path(secret).chmod(0o600)
    return Path(public), Path(secret)


def load_public_key(path: str | Path) -> bytes:
    """Read the Z85 public key from a ``.key`` or ``.key_secret`` file."""
    try:
        public, _ = zmq.auth.load_certificate(str(path))
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot read a CURVE key from {path}: {exc}") from exc
    return public


@dataclass(frozen=True)
class CurveKeys:
    """A node's or client's CURVE identity and whom it accepts.

    ``public_key``/``secret_key`` are Z85 keys (40 bytes); ``authorized``
    is a directory of ``*.key`` files: the public keys allowed to connect.
    """

    public_key: bytes
    secret_key: bytes
    authorized: Path

    @classmethod
    def from_files(cls, secret_file: str | Path, authorized: str | Path) -> CurveKeys:
        """Load a key pair from a ``.key_secret`` file; raises ConfigError."""
        try:
            public, secret = zmq.auth.load_certificate(str(secret_file))
        except (OSError, ValueError) as exc:
            raise ConfigError(f"cannot read a CURVE key pair from {secret_file}: {exc}") from exc
        if secret is None:
            raise ConfigError(f"{secret_file} holds no secret key")
        folder = Path(authorized)
        if not folder.is_dir():
            raise ConfigError(f"authorized keys directory {folder} does not exist")
        return cls(public_key=public, secret_key=secret, authorized=folder)


def load_keys(directory: str | Path) -> CurveKeys:
    """Load ``DIR/node.key_secret`` and the authorized keys in
    ``DIR/authorized/`` (the layout ``taskmesh keygen DIR`` writes)."""
    folder = Path(directory)
    secret = folder / "node.key_secret"
    if not secret.is_file():
        raise ConfigError(f"{secret} does not exist: create it with `taskmesh keygen {folder}`")
    return CurveKeys.from_files(secret, folder / "authorized")


class Authenticator:
    """ZeroMQ's ZAP handler for one context, fed from ``keys.authorized``.

    It runs in a thread of its own (``zmq.auth.ThreadAuthenticator``).
    :meth:`reload` re-reads the directory when a key was added to or
    removed from it; the I/O thread calls it every heartbeat tick. Keys
    apply to new connections; a connection already made stays.
    """

    def __init__(self, context: zmq.Context[zmq.Socket[bytes]], keys: CurveKeys) -> None:
        self._keys = keys
        self._auth = zmq.auth.thread.ThreadAuthenticator(context, log=log)
        self._auth.start()
        self._auth.configure_curve(domain="*", location=str(keys.authorized))
        self._mtime = self._read_mtime()

    def _read_mtime(self) -> int:
        try:
            return self._keys.authorized.stat().st_mtime_ns
        except OSError:
            return getattr(self, "_mtime", 0)

    def reload(self) -> None:
        """Re-read the authorized keys if their directory changed (I/O thread)."""
        mtime = self._read_mtime()
        if mtime == self._mtime:
            return
        self._mtime = mtime
        try:
            self._auth.configure_curve(domain="*", location=str(self._keys.authorized))
        except Exception as exc:  # a broken key file: keep the keys we had
            log.warning("could not re-read authorized keys in %s: %s", self._keys.authorized, exc)
            return
        log.info("re-read authorized keys in %s", self._keys.authorized)

    def stop(self) -> None:
        self._auth.stop()
