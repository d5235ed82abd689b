"""A seeded chaos run: three nodes and a client under traffic while faults land.

Used by ``tests/faults/test_chaos.py`` (about a minute) and
``benchmarks/soak.py --minutes N``. The schedule of faults is drawn from
``random.Random(seed)``, so a failing run can be replayed with its seed.

Nodes ``c1``, ``c2``, ``c3`` (``tests.faults.apps:chaos``) share one etcd.
Traffic, from this process:

- askers: asks to the ``counter`` capability with retries and a fresh
  idempotency key each;
- a teller: tells with blocking delivery (the default) to ``sink-c1``, each
  carrying a sequence number.

Faults, one every few seconds: ``kill -9`` of ``c2`` or ``c3`` and its restart
under the same name; SIGSTOP and, seconds later, SIGCONT of any node; etcd
stopped and started again; and a full mailbox (``gated-c1``'s gate closed for
a while, with tells waiting for room). ``c1`` is never killed: a tell a node
had taken into its mailbox when it died is lost with it, and the guarantees
say so; the sink's node is where every told message must be accounted for.

Checks, in :meth:`ChaosReport.problems`: every ask with retries was answered;
no process applied a key's effect twice; every tell that ``tell`` returned
from arrived or is a dead letter on the client naming the fault; and no
process or thread of the run is left.
"""

from __future__ import annotations

import contextlib
import os
import random
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import psutil

import taskmesh
from taskmesh.cluster import EmbeddedEtcd
from tests.etcd_fixtures import unique_cluster
from tests.integration.node.support import NodeProcess
from tests.waiting import wait_until

NODES = ("c1", "c2", "c3")
KILLABLE = ("c2", "c3")
FAULTS = ("kill", "pause", "etcd", "full")


@dataclass
class ChaosReport:
    """What a run saw; :meth:`problems` says what broke a guarantee."""

    seed: int
    faults: list[str] = field(default_factory=list)
    asked: int = 0
    answered: int = 0
    ask_errors: list[str] = field(default_factory=list)
    twice: list[str] = field(default_factory=list)
    told: int = 0
    arrived: int = 0
    dead: dict[str, int] = field(default_factory=dict)
    unaccounted: list[int] = field(default_factory=list)
    leaked: list[str] = field(default_factory=list)

    def problems(self) -> list[str]:
        found = []
        if self.ask_errors:
            found.append(f"{len(self.ask_errors)} asks failed: {self.ask_errors[:3]}")
        if self.asked != self.answered:
            found.append(f"{self.asked - self.answered} asks got no answer")
        if self.twice:
            found.append(f"keys applied twice by one process: {self.twice[:5]}")
        if self.unaccounted:
            found.append(f"{len(self.unaccounted)} tells neither arrived nor dead letters: "
                         f"{self.unaccounted[:10]}")  # fmt: skip
        if self.leaked:
            found.append(f"left over: {self.leaked}")
        return found

    def summary(self) -> str:
        return (
            f"seed {self.seed}: faults {self.faults}; asks {self.answered}/{self.asked}; "
            f"tells {self.arrived} arrived + {sum(self.dead.values())} dead letters "
            f"{self.dead} of {self.told}"
        )


class Chaos:
    """One run; :meth:`run` returns its report. Every process it starts is
    stopped by it, also when it fails."""

    def __init__(
        self, seed: int, seconds: float, *, log: Callable[[str], None] = lambda line: None
    ) -> None:
        self.seed = seed
        self.seconds = seconds
        self.rng = random.Random(seed)
        self.log = log
        self.report = ChaosReport(seed)
        self.stop = threading.Event()
        self.etcd = EmbeddedEtcd()
        self.cluster = unique_cluster()
        self.nodes: dict[str, NodeProcess] = {}
        self.retired: list[NodeProcess] = []
        self.lock = threading.Lock()
        self.answers: list[dict[str, Any]] = []
        self.sent: list[int] = []

    # --- processes ---------------------------------------------------------------

    def start_node(self, name: str) -> NodeProcess:
        node = NodeProcess(
            "--etcd", self.etcd.endpoint, "--cluster", self.cluster,
            "--app", "tests.faults.apps:chaos", "--log-level", "WARNING", name=name,
        )  # fmt: skip
        self.nodes[name] = node
        return node.wait_ready(90)

    def close(self) -> None:
        for node in [*self.nodes.values(), *self.retired]:
            node.close()
        self.etcd.close()

    # --- traffic (client threads) ----------------------------------------------------

    def ask_loop(self, client: taskmesh.Client, worker: int) -> None:
        counters = client.capability("counter")
        n = 0
        while not self.stop.is_set():
            n += 1
            key = f"a{worker}-{n}"
            with self.lock:
                self.report.asked += 1
            try:
                reply = counters.ask({"key": key}, timeout=60.0, retries=100, idempotency_key=key)
            except Exception as error:  # a broken guarantee: reported
                with self.lock:
                    self.report.ask_errors.append(f"{key}: {type(error).__name__}: {error}")
                continue
            with self.lock:
                self.report.answered += 1
                self.answers.append(reply)

    def tell_loop(self, client: taskmesh.Client) -> None:
        sink = client.ref("sink-c1")
        seq = 0
        while not self.stop.is_set():
            seq += 1
            # Refused after the send timeout: a dead letter names it.
            with contextlib.suppress(taskmesh.MailboxFull):
                sink.tell({"seq": seq})
            with self.lock:
                self.sent.append(seq)
            self.stop.wait(0.005)  # a steady trickle, not a flood

    def full_loop(self, client: taskmesh.Client, until: float) -> None:
        """Tells to a gated actor while its gate is closed: they wait for room."""
        gated = client.ref("gated-c1")
        while time.monotonic() < until and not self.stop.is_set():
            try:
                gated.tell("work")
            except taskmesh.MailboxFull:
                return

    # --- faults ---------------------------------------------------------------------

    def fault(self, client: taskmesh.Client) -> None:
        kind = self.rng.choice(FAULTS)
        hold = self.rng.uniform(1.5, 3.0)
        if kind == "kill":
            name = self.rng.choice(KILLABLE)
            victim = self.nodes[name]
            victim.proc.kill()  # SIGKILL: no drain, no deregistration
            victim.proc.wait(30)
            self.retired.append(victim)
            self.start_node(name)
            self.report.faults.append(f"kill {name}")
        elif kind == "pause":
            name = self.rng.choice(NODES)
            proc = self.nodes[name].proc
            proc.send_signal(signal.SIGSTOP)
            try:
                self.stop.wait(hold)
            finally:
                proc.send_signal(signal.SIGCONT)
            self.report.faults.append(f"pause {name} {hold:.1f}s")
        elif kind == "etcd":
            self.etcd.stop()
            try:
                self.stop.wait(hold)
            finally:
                self.etcd.start()
            self.report.faults.append(f"etcd down {hold:.1f}s")
        else:
            gate = client.ref("gate-c1")
            gate.tell("close")
            filler = threading.Thread(
                target=self.full_loop, args=(client, time.monotonic() + hold), daemon=True
            )
            filler.start()
            filler.join(hold + 30)
            gate.tell("open")
            self.report.faults.append(f"full mailbox {hold:.1f}s")
        self.log(f"chaos: {self.report.faults[-1]}")

    # --- the run ----------------------------------------------------------------------

    def run(self) -> ChaosReport:
        me = psutil.Process()
        threads_before = threading.active_count()
        try:
            self.etcd.start()
            for name in NODES:
                self.start_node(name)
            with taskmesh.connect(etcd=self.etcd.endpoint, cluster=self.cluster) as client:
                letters: list[Any] = []
                client.dead_letters.subscribe(letters.append)
                traffic = [
                    threading.Thread(target=self.ask_loop, args=(client, w), daemon=True)
                    for w in range(2)
                ]
                traffic.append(threading.Thread(target=self.tell_loop, args=(client,), daemon=True))
                for thread in traffic:
                    thread.start()
                end = time.monotonic() + self.seconds
                while time.monotonic() < end:
                    self.stop.wait(self.rng.uniform(1.0, 3.0))
                    self.fault(client)
                self.stop.set()
                for thread in traffic:
                    thread.join(120)
                self.account(client, letters)
        finally:
            self.stop.set()
            self.close()
        self.leaks(me, threads_before)
        return self.report

    def account(self, client: taskmesh.Client, letters: list[Any]) -> None:
        report = self.report
        # Effect-once: within one process, a key applies once (answers from
        # memory say applied 1), and the live ledgers hold no key twice.
        for answer in self.answers:
            if answer["applied"] != 1:
                report.twice.append(f"{answer['key']} on {answer['node']}/{answer['pid']}")
        for name in NODES:
            twice = client.ask(f"ledger-{name}", "twice", timeout=60.0, retries=20)
            report.twice += [f"{key} ({n} times) on {name}" for key, n in twice.items()]
        # Tells: arrived, or a dead letter on the client.
        runs = client.ask("sink-c1", "seen", timeout=60.0, retries=20)
        seen = {seq for first, last in runs for seq in range(first, last + 1)}
        dead: dict[str, int] = {}
        dead_seqs = set()
        for letter in letters:
            message = letter.message
            if isinstance(message, dict) and "seq" in message:
                dead_seqs.add(message["seq"])
                dead[letter.reason] = dead.get(letter.reason, 0) + 1
        report.told = len(self.sent)
        report.arrived = len(seen & set(self.sent))
        report.dead = dead
        report.unaccounted = sorted(set(self.sent) - seen - dead_seqs)

    def leaks(self, me: psutil.Process, threads_before: int) -> None:
        def alive() -> list[psutil.Process]:
            children = [p for p in me.children(recursive=True) if p.is_running()]
            return [p for p in children if p.status() != psutil.STATUS_ZOMBIE]

        def gone() -> bool:
            return not alive() and threading.active_count() <= threads_before

        try:
            wait_until(gone, 30, interval=0.1, message="the run's processes and threads to end")
        except AssertionError:
            self.report.leaked = [f"process {p.pid} {p.name()}" for p in alive()]
            extra = threading.active_count() - threads_before
            if extra > 0:
                names = sorted(t.name for t in threading.enumerate())
                self.report.leaked.append(f"{extra} threads: {names}")


def seed_from_environment() -> int:
    """``TASKMESH_CHAOS_SEED`` replays a run; otherwise a fresh seed."""
    value = os.environ.get("TASKMESH_CHAOS_SEED")
    return int(value) if value else random.SystemRandom().randrange(1 << 31)
