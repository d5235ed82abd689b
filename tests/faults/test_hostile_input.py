"""Hostile input against a running node with CURVE on, while it serves a client."""

from __future__ import annotations

import random
import threading
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import msgpack
import pytest
import zmq
import zmq.auth

import taskmesh
from tests.faults.conftest import Nodes
from tests.integration.node.support import cli
from tests.waiting import wait_until

pytestmark = pytest.mark.integration


def ask_frame(key: str) -> bytes:
    """A well-formed ask to ``counter-a`` (protocol 1, kind 2, cid 1, 5 s)."""
    return bytes(msgpack.packb([1, "fuzz", [2, "counter-a", 1, 5000, {"key": key}]]))


GOOD_ASK = ask_frame("intruder")


def malformed(rng: random.Random) -> Iterator[list[bytes]]:
    """Endless messages that are each one malformed frame for the node."""
    makers: list[Callable[[], list[bytes]]] = [
        lambda: [rng.randbytes(rng.randint(0, 64))],
        lambda: [GOOD_ASK[: rng.randint(0, len(GOOD_ASK) - 1)]],  # truncated
        lambda: [msgpack.packb({"not": "a frame"})],
        lambda: [msgpack.packb([rng.choice([0, 2, 99]), "fuzz", [2, "x", 1, 1, "x"]])],  # version
        lambda: [b"\xdd\xff\xff\xff\xff"],  # declares an array of 4 G elements
        lambda: [b"\x93\x01\xa4fuzz\xc6\xff\xff\xff\xf0abc"],  # declares a 4 GB bin
        lambda: [msgpack.packb([1, "fuzz", [9, "counter-a", 1, None, "x"]])],  # unknown kind
        lambda: [msgpack.packb([1, "fuzz", "not an envelope"])],
        lambda: [b"a", b"b"],  # two data frames
    ]
    while True:
        yield rng.choice(makers)()


def metric(url: str, name: str) -> float:
    with urllib.request.urlopen(url, timeout=10) as reply:
        for line in reply.read().decode().splitlines():
            if line.startswith(name + " "):
                return float(line.split()[1])
    raise AssertionError(f"{name} not in {url}")


def dealer(
    context: zmq.Context[zmq.Socket[bytes]], address: str, keys: Path | None, server: bytes | None
) -> zmq.Socket[bytes]:
    sock = context.socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    if keys is not None and server is not None:
        public, secret = zmq.auth.load_certificate(str(keys))
        sock.curve_publickey = public
        assert secret is not None
        sock.curve_secretkey = secret
        sock.curve_serverkey = server
    sock.connect(address)
    return sock


BAD_CLI = [
    ["ask", "echo-a", "{not json"],
    ["ask", "no such name!", "1"],
    ["tell", "echo-a", "[1, 2"],
    ["ask", "echo-a", "1", "--timeout", "soon"],
    ["members", "--no-such-flag"],
    ["node", "--listen", "udp://nowhere", "--etcd", "http://127.0.0.1:1"],
    ["node", "--app", "no_such_module:setup", "--etcd", "http://127.0.0.1:1"],
    ["ask", "echo-a", "1", "--keys", "/nonexistent/keys"],
]


class Traffic:
    """A client thread asking the node's counter by name, with fresh keys."""

    def __init__(self, client: taskmesh.Client) -> None:
        self.ref = client.ref("counter-a")
        self.answers = 0
        self.errors: list[BaseException] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                reply = self.ref.ask({"key": f"t{self.answers}"}, timeout=20.0)
                assert reply["applied"] == 1, reply
                self.answers += 1
        except BaseException as error:  # reported by the test thread
            self.errors.append(error)

    def wait_for(self, more: int) -> None:
        seen = self.answers
        wait_until(lambda: self.answers >= seen + more or self.errors, 60, message="answers")
        assert not self.errors, self.errors

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(60)


def test_a_node_drops_and_counts_junk_refuses_strangers_and_keeps_serving(
    nodes: Nodes, tmp_path: Path
) -> None:
    keys, intruder = tmp_path / "keys", tmp_path / "intruder"
    for directory in (keys, intruder):
        made = cli("keygen", str(directory))
        assert made.returncode == 0, made.stderr
    node = nodes.start("a", "--keys", str(keys), "--metrics-port", "0")
    metrics = node.metrics + "/metrics"
    server_key, _ = zmq.auth.load_certificate(str(keys / "node.key"))
    context: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
    client = taskmesh.connect(etcd=nodes.etcd_url, cluster=nodes.cluster, keys=keys)
    traffic = Traffic(client)
    try:
        traffic.wait_for(10)
        before = metric(metrics, "taskmesh_malformed_frames_total")

        # Junk from an authorized peer: past CURVE, so the node reads it.
        fuzzer = dealer(context, node.address, keys / "node.key_secret", server_key)
        sent = 0
        for parts in malformed(random.Random(6)):
            fuzzer.send_multipart(parts)
            sent += 1
            if sent == 3000:
                break
        wait_until(
            lambda: metric(metrics, "taskmesh_malformed_frames_total") >= before + sent,
            60,
            message=f"{sent} malformed frames counted",
        )
        traffic.wait_for(10)
        # Oversized: ZeroMQ's size limit cuts the peer off; the node carries on.
        fuzzer.send(b"\x00" * (5 * 1024 * 1024))
        traffic.wait_for(10)

        # The same well-formed ask from an authorized peer is answered...
        control = dealer(context, node.address, keys / "node.key_secret", server_key)
        control.send(ask_frame("control"))
        assert control.poll(20_000), "an authorized raw ask got no answer"
        assert b"control" in control.recv()
        # ... but a peer with an unknown key, and one without CURVE, deliver nothing:
        # their ask (key "intruder") never reaches the counter.
        stranger = dealer(context, node.address, intruder / "node.key_secret", server_key)
        plain = dealer(context, node.address, None, None)
        for sock in (stranger, plain):
            sock.send(GOOD_ASK)
            sock.send(b"junk")
        for sock in (stranger, plain):
            assert sock.poll(2000) == 0, "a stranger got an answer"
        traffic.wait_for(10)
        assert client.ref("counter-a").ask({"key": "intruder"}, timeout=20.0)["applied"] == 1

        # Bad command lines: one line on stderr, a non-zero exit, no traceback.
        environ = {"TASKMESH_ETCD": nodes.etcd_url, "TASKMESH_CLUSTER": nodes.cluster}
        for argv in BAD_CLI:
            done = cli(*argv, environ=environ)
            assert done.returncode != 0, (argv, done.stdout)
            assert "Traceback" not in done.stderr, (argv, done.stderr)
            assert len(done.stderr.strip().splitlines()) == 1, (argv, done.stderr)
        traffic.wait_for(10)
        assert node.proc.poll() is None
        assert metric(metrics, "taskmesh_malformed_frames_total") >= before + sent
    finally:
        traffic.stop()
        client.close()
        context.destroy(linger=0)
    assert not traffic.errors, traffic.errors
