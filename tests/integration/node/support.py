"""Run real ``taskmesh node`` processes and CLI commands in tests."""

from __future__ import annotations

import contextlib
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]


def taskmesh_cmd() -> list[str]:
    return [sys.executable, "-m", "taskmesh"]


def env(**extra: str) -> dict[str, str]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("TASKMESH_")}
    environ["PYTHONPATH"] = str(ROOT) + os.pathsep + environ.get("PYTHONPATH", "")
    environ.update(extra)
    return environ


class NodeProcess:
    """A ``taskmesh node`` child process; reads its status lines.

    ``prefix`` runs it under another command (``ip netns exec NS`` for a
    node in a network namespace). ``own_group`` makes it lead a process
    group of its own, as a shell does with a job (Ctrl-C signals the group).
    """

    def __init__(
        self,
        *args: str,
        name: str,
        cwd: Path = ROOT,
        prefix: Sequence[str] = (),
        own_group: bool = False,
    ) -> None:
        self.name = name
        self.lines: queue.Queue[str] = queue.Queue()
        self.output: list[str] = []
        self.proc = subprocess.Popen(
            [*prefix, *taskmesh_cmd(), "node", "--name", name, *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=cwd,
            env=env(TASKMESH_TEST_NODE=name),
            process_group=0 if own_group else None,
        )
        self.stderr: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()
        threading.Thread(target=self._read_err, daemon=True).start()
        self.address = ""
        self.etcd = ""
        self.metrics = ""

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(line.rstrip("\n"))

    def _read_err(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.stderr.append(line.rstrip("\n"))

    def expect(self, prefix: str, timeout: float = 60.0) -> str:
        """Wait for a stdout line starting with ``taskmesh: <prefix>``."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(
                    f"node {self.name} did not print {prefix!r}; stdout {self.output}, "
                    f"stderr {self.stderr[-20:]}"
                )
            try:
                line = self.lines.get(timeout=min(left, 0.2))
            except queue.Empty:
                if self.proc.poll() is not None and self.lines.empty():
                    raise AssertionError(
                        f"node {self.name} exited {self.proc.returncode} before {prefix!r}; "
                        f"stdout {self.output}, stderr {self.stderr[-20:]}"
                    ) from None
                continue
            self.output.append(line)
            if line.startswith("taskmesh: " + prefix):
                return line

    def wait_ready(self, timeout: float = 60.0) -> NodeProcess:
        while True:
            line = self.expect("", timeout)
            if line.startswith("taskmesh: embedded etcd at "):
                self.etcd = line.split()[4]
            elif line.startswith(f"taskmesh: node {self.name} "):
                self.address = line.rsplit(" ", 1)[1]
            elif line.startswith("taskmesh: metrics at "):
                self.metrics = line.split()[3].removesuffix("/metrics")
            elif line == "taskmesh: ready":
                return self

    def terminate(self, timeout: float = 60.0) -> int:
        """SIGTERM and wait for the exit code."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout)

    def close(self) -> None:
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.send_signal(signal.SIGCONT)
                self.proc.kill()
        self.proc.wait(30)
        for stream in (self.proc.stdout, self.proc.stderr):
            if stream is not None:
                with contextlib.suppress(OSError):
                    stream.close()


@contextlib.contextmanager
def running_node(*args: str, name: str, ready: bool = True) -> Iterator[NodeProcess]:
    node = NodeProcess(*args, name=name)
    try:
        if ready:
            node.wait_ready()
        yield node
    finally:
        node.close()


def cli(
    *args: str, timeout: float = 60.0, environ: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run one ``taskmesh`` command to completion."""
    return subprocess.run(
        [*taskmesh_cmd(), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=ROOT,
        env=env(**(environ or {})),
        check=False,
    )
