"""Hostile input and security: fuzzed frames and CURVE authentication."""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import msgpack
import pytest
import zmq

from taskmesh.errors import PeerUnreachable
from taskmesh.transport import CurveKeys, Transport, keygen, load_public_key
from tests.integration.transport.conftest import PeerProcess, Peers
from tests.integration.transport.local import local_transport
from tests.waiting import wait_until

pytestmark = pytest.mark.integration


def malformed_frames(rng: random.Random) -> Iterator[list[bytes]]:
    """Endless hostile messages of every kind the transport must survive."""
    good_env = msgpack.packb([2, "echo", 1, 1000, "x"])
    good_frame = msgpack.packb([1, "fuzz", [2, "echo", 7, 1000, "x"]])
    makers = [
        lambda: [rng.randbytes(rng.randint(0, 64))],  # random bytes
        lambda: [good_frame[: rng.randint(0, len(good_frame) - 1)]],  # truncated
        lambda: [msgpack.packb({"not": "a frame"})],  # wrong type
        lambda: [msgpack.packb([1, 42, [2, "echo", 1, 1000, "x"]])],  # sender not a string
        lambda: [msgpack.packb([rng.choice([0, 2, 99, "1"]), "fuzz"]) + good_env],  # version
        lambda: [b"\xdd\xff\xff\xff\xff"],  # array of 4 G elements
        lambda: [b"\x93\x01\xa4fuzz\xdb\x7f\xff\xff\xff"],  # str of 2 GB
        lambda: [b"\x93\x01\xa4fuzz\xc6\xff\xff\xff\xf0abc"],  # bin of 4 GB
        lambda: [msgpack.packb([1, "fuzz", [2, "echo", "cid", 1000, "x"]])],  # bad ask header
        lambda: [msgpack.packb([1, "fuzz", [9, "echo", 1, None, "x"]])],  # unknown kind
        lambda: [msgpack.packb([1, "fuzz", "not an envelope"])],
        lambda: [msgpack.packb([1, "fuzz", [1, "seq"]])],  # short envelope
        lambda: [b"\xc7\x03\x05abc"],  # an extension type
        lambda: [b"a", b"b"],  # two data frames
    ]
    while True:
        yield rng.choice(makers)()


def test_ten_thousand_malformed_frames_are_dropped_and_counted_while_asks_succeed(
    peers: Peers,
) -> None:
    peer = peers.start()
    local = local_transport()
    errors: list[BaseException] = []
    answered = 0
    done = threading.Event()

    def keep_asking() -> None:
        nonlocal answered
        echo = local.ref(peer.address, "echo")
        try:
            while not done.is_set():
                assert echo.ask({"n": answered}, timeout=20) == {"n": answered}
                answered += 1
        except BaseException as exc:  # reported by the main thread
            errors.append(exc)

    asker = threading.Thread(target=keep_asking)
    asker.start()
    context = zmq.Context()
    fuzzer = context.socket(zmq.DEALER)
    fuzzer.setsockopt(zmq.LINGER, 0)
    fuzzer.connect(peer.address)
    sent = 0
    try:
        for parts in malformed_frames(random.Random(1234)):
            fuzzer.send_multipart(parts)
            sent += 1
            if sent >= 12_000:
                break
        control = local.ref(peer.address, "control")
        deadline = time.monotonic() + 60
        while (stats := control.ask({"op": "stats"}, timeout=20))["malformed_frames"] < sent:
            assert time.monotonic() < deadline, stats
        assert stats["malformed_frames"] == sent
    finally:
        done.set()
        asker.join(60)
        fuzzer.close()
        context.term()
        local.stop()
    assert not errors, errors
    assert answered > 0
    assert stats["dead_letters"] == {}


@pytest.fixture
def keys(tmp_path: Path) -> Path:
    """server, client (authorized) and intruder key pairs; authorized/ holds
    the public keys of server and client."""
    for name in ("server", "client", "intruder"):
        keygen(tmp_path / name, name)
    authorized = tmp_path / "authorized"
    authorized.mkdir()
    for name in ("server", "client"):
        (authorized / f"{name}.key").write_bytes((tmp_path / name / f"{name}.key").read_bytes())
    return tmp_path


def _client(keys: Path, name: str) -> Transport:
    curve = CurveKeys.from_files(keys / name / f"{name}.key_secret", keys / "authorized")
    return local_transport(keys=curve, listen=None)


def _curve_peer(keys: Path, peers: Peers) -> tuple[PeerProcess, bytes]:
    """A peer with the server key pair and ``authorized/``; and its public key."""
    peer = peers.start(
        "--secret",
        str(keys / "server" / "server.key_secret"),
        "--authorized",
        str(keys / "authorized"),
    )
    return peer, load_public_key(keys / "server" / "server.key")


def test_curve_authorized_client_is_served_and_unknown_key_delivers_nothing(
    keys: Path, peers: Peers
) -> None:
    peer, server_key = _curve_peer(keys, peers)
    good = _client(keys, "client")
    bad = _client(keys, "intruder")
    plain = local_transport(listen=None)
    try:
        echo = good.ref(peer.address, "echo", server_key=server_key)
        assert echo.ask("secret", timeout=10) == "secret"
        start = time.monotonic()
        with pytest.raises(PeerUnreachable, match="authentication"):
            bad.ref(peer.address, "echo", server_key=server_key).ask("let me in", timeout=30)
        assert time.monotonic() - start < 10
        bad.ref(peer.address, "seq", server_key=server_key).tell("sneaky")
        with pytest.raises(PeerUnreachable):
            plain.ref(peer.address, "echo").ask("no keys", timeout=30)
        plain.ref(peer.address, "seq").tell("sneaky")
        assert good.ref(peer.address, "seq", server_key=server_key).ask("get", timeout=10) == []
        stats = good.ref(peer.address, "control", server_key=server_key).ask(
            {"op": "stats"}, timeout=10
        )
        assert stats["delivered"] == 3  # echo, seq "get", this stats ask: all from `good`
    finally:
        for transport in (good, bad, plain):
            transport.stop()


def test_a_key_added_to_the_authorized_directory_is_accepted_without_a_restart(
    keys: Path, peers: Peers
) -> None:
    peer, server_key = _curve_peer(keys, peers)

    def intruder_answered() -> bool:
        client = _client(keys, "intruder")
        try:
            echo = client.ref(peer.address, "echo", server_key=server_key)
            return bool(echo.ask("now?", timeout=5) == "now?")
        except PeerUnreachable:
            return False
        finally:
            client.stop()

    assert not intruder_answered()
    (keys / "authorized" / "intruder.key").write_bytes(
        (keys / "intruder" / "intruder.key").read_bytes()
    )
    wait_until(intruder_answered, timeout=30, message="the newly authorized key to be served")
    (keys / "authorized" / "intruder.key").unlink()
    wait_until(lambda: not intruder_answered(), timeout=30, message="the removed key refused")
