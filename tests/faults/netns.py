"""Network namespaces as test hosts, for partition tests (needs root).

``Lab`` makes a bridge in the root namespace and one namespace per host,
each with a veth pair into the bridge and its own address in a /24 that
exists only inside this lab. ``partition(host)`` takes the host's link down
(its processes keep running but reach nothing); ``heal(host)`` brings it
back. Everything is removed on close, also after a failure.
"""

from __future__ import annotations

import contextlib
import secrets
import subprocess
from collections.abc import Iterator


def ip(*args: str, netns: str | None = None) -> None:
    command = ["ip", *args] if netns is None else ["ip", "netns", "exec", netns, "ip", *args]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed: {done.stderr.strip()}")


class Lab:
    """A bridge ``tmbr<id>`` at ``<prefix>.1`` and hosts at ``<prefix>.11``, ``.12``..."""

    def __init__(self, hosts: list[str], *, subnet: int | None = None) -> None:
        self.id = secrets.token_hex(2)
        self.subnet = subnet if subnet is not None else 64 + secrets.randbelow(128)
        self.prefix = f"10.213.{self.subnet}"
        self.bridge = f"tmbr{self.id}"
        self.gateway = f"{self.prefix}.1"
        self.hosts = {name: f"{self.prefix}.{11 + i}" for i, name in enumerate(hosts)}
        self._made: list[str] = []

    def netns(self, host: str) -> str:
        return f"tm{self.id}{host}"

    def veth(self, host: str) -> str:
        return f"tmv{self.id}{host}"[:15]

    def open(self) -> Lab:
        ip("link", "add", self.bridge, "type", "bridge")
        self._made.append(f"link:{self.bridge}")
        ip("addr", "add", f"{self.gateway}/24", "dev", self.bridge)
        ip("link", "set", self.bridge, "up")
        for host, address in self.hosts.items():
            ns, outer, inner = self.netns(host), self.veth(host), "eth0"
            ip("netns", "add", ns)
            self._made.append(f"netns:{ns}")
            ip("link", "add", outer, "type", "veth", "peer", "name", f"tmp{self.id}{host}"[:15])
            self._made.append(f"link:{outer}")
            ip("link", "set", f"tmp{self.id}{host}"[:15], "netns", ns)
            ip("link", "set", f"tmp{self.id}{host}"[:15], "name", inner, netns=ns)
            ip("addr", "add", f"{address}/24", "dev", inner, netns=ns)
            ip("link", "set", inner, "up", netns=ns)
            ip("link", "set", "lo", "up", netns=ns)
            ip("link", "set", outer, "master", self.bridge)
            ip("link", "set", outer, "up")
        return self

    def exec_prefix(self, host: str) -> list[str]:
        """Prefix a command with this to run it inside ``host``'s namespace."""
        return ["ip", "netns", "exec", self.netns(host)]

    def partition(self, host: str) -> None:
        ip("link", "set", self.veth(host), "down")

    def heal(self, host: str) -> None:
        ip("link", "set", self.veth(host), "up")

    def close(self) -> None:
        for item in reversed(self._made):
            kind, name = item.split(":", 1)
            with contextlib.suppress(RuntimeError):
                if kind == "netns":
                    ip("netns", "del", name)
                else:
                    ip("link", "del", name)
        self._made.clear()


@contextlib.contextmanager
def lab(hosts: list[str]) -> Iterator[Lab]:
    network = Lab(hosts)
    try:
        yield network.open()
    finally:
        network.close()
