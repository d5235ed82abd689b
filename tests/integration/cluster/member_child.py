"""A cluster member in its own process, driven by the integration tests.

Usage: ``python member_child.py '<json config>'``. Prints one line per
event on stdout and obeys commands on stdin; see `ChildMember` in
``tests/etcd_fixtures.py``. Not a test module.
"""

from __future__ import annotations

import json
import sys
import threading

from taskmesh.cluster import ClusterMember, ClusterSettings, Fence
from taskmesh.errors import FencingError

_say_lock = threading.Lock()


def say(line: str) -> None:
    """Print one whole line; events come from several threads, and ``print``
    writes the text and the newline separately, so two lines could mix."""
    with _say_lock:
        sys.stdout.write(line + "\n")
        sys.stdout.flush()


def main() -> None:
    config = json.loads(sys.argv[1])
    settings = ClusterSettings(
        etcd=config["etcd"],
        cluster=config["cluster"],
        node=config["node"],
        address=config.get("address", f"tcp://127.0.0.1:1/{config['node']}"),
        capabilities=frozenset(config.get("labels", ())),
        lease_ttl=int(config.get("ttl", 3)),
    )
    fences: list[Fence] = []
    member = ClusterMember(
        settings,
        singleton_start=lambda name, cap: say(f"START {name}"),
        singleton_stop=lambda name: say(f"STOP {name}"),
    )

    def elected(fence: Fence) -> None:
        fences.append(fence)
        say(f"ELECTED {fence.token}")

    member.on_leadership(elected, lambda: say("DEMOTED"))
    member.start()
    for name in config.get("names", ()):
        member.register_actor(name, capabilities=config.get("capabilities", ()))
    say("READY")
    done = threading.Event()
    for line in sys.stdin:
        command = line.strip()
        if command == "write":
            # Act with the fence captured when elected, as a leader loop would.
            try:
                fences[-1].put(f"/taskmesh/{settings.cluster}/leader-writes", b"old")
                say("WRITE ok")
            except FencingError:
                say("WRITE fenced")
            except IndexError:
                say("WRITE never-elected")
        elif command == "quit":
            done.set()
            break
    member.stop()


if __name__ == "__main__":
    main()
