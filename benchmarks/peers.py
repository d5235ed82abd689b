"""taskmesh against Ray actors and Celery + Redis, through each one's public API.

Run from the repository root::

    .venv/bin/python benchmarks/peers.py              # 7 rounds, about two minutes
    .venv/bin/python benchmarks/peers.py --quick      # a smoke run
    .venv/bin/python benchmarks/peers.py --redis redis://127.0.0.1:6379/0

It installs nothing. Ray runs when ``ray`` imports; Celery runs when
``celery`` and ``redis`` import and either ``redis-server`` is on PATH (then
it is started here on a free loopback port) or ``--redis`` names a running
server. A missing peer is named on one line and its column skipped. To
measure all three (none of them is a dependency of taskmesh, nor of its
tests; last measured with ray 2.60, celery 5.7, redis-py 8.1, Redis 7.0)::

    .venv/bin/pip install ray celery redis && apt-get install -y redis-server

Every process started here (etcd, the node, Ray's, Redis, the Celery
worker) is stopped at the end, also after an error, Ctrl-C or SIGTERM; a
last check kills any descendant still running and names it.

What runs, all on this machine over loopback:

- taskmesh exactly as in ``benchmarks/remote.py``: an embedded etcd, one
  ``taskmesh node`` process hosting ``benchmarks/remote_apps.py``, and here
  a client from ``taskmesh.connect``. Calls go through ``client.ref(name)``.
  The headline column is the ordinary (threaded) actor ``echo``; the inline
  actor ``echo-inline`` is an extra, labelled column.
- Ray: a local instance (``ray.init`` here, 2 CPUs, no dashboard) and one
  actor (``num_cpus=0``, as in Ray's own microbenchmark) whose method
  returns its argument.
- Celery + Redis: a Redis server as broker and result backend, one worker
  process started here (``--pool solo``, so concurrency 1; no gossip,
  mingle or heartbeat), an echo task, JSON serialization.

Rows, named after ``ray microbenchmark`` (``ray/_private/ray_perf.py``):

- ``1_1_actor_calls_sync``: one caller asks and waits, then asks again
  (round trips/s): ``ref.ask(m)``, ``ray.get(actor.echo.remote(m))``,
  ``echo.delay(m).get()``.
- ``1_1_actor_calls_async``: pipelined calls, in the shape of Ray's
  ``1:1 actor calls async``: send a batch of 1,000 calls, then wait for all
  of them, repeat (calls/s): ``ref.ask_async(m)`` then ``get()`` each;
  ``actor.echo.remote(m)`` then one ``ray.get(list)``; ``echo.delay(m)``
  then ``get()`` each.

Every call carries ``{"n": i}`` and gets it back. The systems take turns
within each round, in an order that rotates from round to round, because
these machines are shared and noisy: the ratios measured in one run (per
round, and of the medians) are what mean something.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import importlib.util
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import taskmesh  # noqa: E402
from benchmarks.remote import WINDOW, Public, start_node  # noqa: E402
from taskmesh.cluster import EmbeddedEtcd  # noqa: E402
from taskmesh.cluster.embedded import free_port  # noqa: E402

SYNC = "1_1_actor_calls_sync"
ASYNC = "1_1_actor_calls_async"
UNITS = {SYNC: "round trips/s", ASYNC: f"calls/s, batches of {WINDOW:,}"}
HEADLINE = "taskmesh"
GOALS = [(SYNC, "ray", 3.0), (ASYNC, "ray", 20.0), (SYNC, "celery", 10.0)]
REPLY_TIMEOUT = 60.0


@dataclass(frozen=True)
class System:
    """One column: how to make a sync call, send a call, and wait for sent ones."""

    name: str
    sync: Callable[[Any], Any]
    send: Callable[[Any], Any]
    wait: Callable[[list[Any]], object]


def pipelined(system: System, seconds: float) -> float:
    """Batches of ``WINDOW`` calls, each sent whole and then waited for whole,
    until ``seconds`` have passed (calls/s; at least one batch)."""
    send, wait = system.send, system.wait
    calls = 0
    start = time.perf_counter()
    while True:
        wait([send({"n": i}) for i in range(WINDOW)])
        calls += WINDOW
        now = time.perf_counter()
        if now >= start + seconds:
            return calls / (now - start)


def stop_process(proc: subprocess.Popen[Any], grace: float) -> None:
    """Terminate ``proc`` (kill it after ``grace`` s); a no-op once it exited."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    for stream in (proc.stdin, proc.stdout, proc.stderr):
        if stream is not None:
            stream.close()


def stop_descendants(keep: Collection[int] = ()) -> list[str]:
    """Kill this process's descendants whose pid is not in ``keep``; return their names."""
    left = [p for p in psutil.Process().children(recursive=True) if p.pid not in keep]
    names = []
    for proc in left:
        with contextlib.suppress(psutil.NoSuchProcess):
            names.append(proc.name())
            proc.kill()
    psutil.wait_procs(left, timeout=10)
    return names


# --- taskmesh: a real node process, the public client API --------------------------


def start_taskmesh(stack: contextlib.ExitStack) -> tuple[list[System], Public]:
    etcd = EmbeddedEtcd().start()
    stack.callback(etcd.stop, remove_data=True)
    node = start_node(etcd.endpoint)
    stack.callback(stop_process, node, 30)
    public = Public(etcd.endpoint, with_node=False)
    stack.callback(public.close)
    systems = []
    for column, actor in ((HEADLINE, "echo"), ("taskmesh inline", "echo-inline")):
        ref = public.client.ref(actor)
        systems.append(
            System(
                column,
                lambda m, ref=ref: ref.ask(m, timeout=10),  # type: ignore[misc]
                lambda m, ref=ref: ref.ask_async(m, timeout=REPLY_TIMEOUT),  # type: ignore[misc]
                get_each,
            )
        )
    return systems, public


def get_each(pending: list[Any]) -> None:
    """Wait for each of taskmesh's replies or Celery's results, in order."""
    for reply in pending:
        reply.get(timeout=REPLY_TIMEOUT)


# --- Ray: a local instance, one actor ----------------------------------------------


class RayEcho:
    """Made a Ray actor class by ``ray.remote`` in :func:`start_ray`."""

    def echo(self, message: Any) -> Any:
        return message


def start_ray(stack: contextlib.ExitStack) -> tuple[System | None, str]:
    if importlib.util.find_spec("ray") is None:
        print("ray: not importable, its column is skipped (pip install ray)", flush=True)
        return None, ""
    # Ray reports usage statistics over the network unless told not to.
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    ray: Any = importlib.import_module("ray")
    # Ray keeps its session's logs and sockets in its temp dir: ours goes at the end.
    temp_dir = stack.enter_context(tempfile.TemporaryDirectory(prefix="peers-ray-"))
    stack.callback(ray.shutdown)
    before = {child.pid for child in psutil.Process().children(recursive=True)}
    for attempt in range(1, 4):
        try:
            ray.init(
                _temp_dir=temp_dir,
                num_cpus=2,
                include_dashboard=False,
                log_to_driver=False,
                logging_level="WARNING",
                object_store_memory=256 * 1024 * 1024,  # the minimum is 75 MiB
            )
            break
        except Exception as exc:
            # Ray gives its raylet 30 s to register, which a loaded 2-core machine can
            # miss; ray.shutdown() then leaves that attempt's processes running.
            ray.shutdown()
            stop_descendants(keep=before)
            if attempt == 3:
                raise
            print(f"ray: ray.init failed ({exc}); trying again", flush=True)
    actor = ray.remote(num_cpus=0)(RayEcho).remote()
    echo = actor.echo.remote
    system = System("ray", lambda m: ray.get(echo(m)), echo, ray.get)
    return system, f"ray {ray.__version__}"


# --- Celery + Redis: a Redis server, one worker process ----------------------------


def start_redis(stack: contextlib.ExitStack, binary: str) -> str:
    """Start ``redis-server`` on a free loopback port; return its URL."""
    redis: Any = importlib.import_module("redis")
    workdir = stack.enter_context(tempfile.TemporaryDirectory(prefix="peers-redis-"))
    for _ in range(3):  # another process may take the free port first
        port = free_port()
        proc = subprocess.Popen(
            [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", workdir, "--loglevel", "warning"],
            stdout=subprocess.DEVNULL,
        )  # fmt: skip
        stack.callback(stop_process, proc, 10)
        url = f"redis://127.0.0.1:{port}/0"
        client = redis.Redis.from_url(url)
        deadline = time.monotonic() + 30
        while proc.poll() is None and time.monotonic() < deadline:
            try:
                client.ping()
            except redis.ConnectionError:
                time.sleep(0.05)
                continue
            client.close()
            return url
        client.close()
        stop_process(proc, 10)
    raise RuntimeError("redis-server did not start")


def start_celery(stack: contextlib.ExitStack, redis_url: str | None) -> tuple[System | None, str]:
    missing = [m for m in ("celery", "redis") if importlib.util.find_spec(m) is None]
    if missing:
        print(
            f"celery: {' and '.join(missing)} not importable, its column is skipped"
            " (pip install celery redis)",
            flush=True,
        )
        return None, ""
    if redis_url is None:
        binary = shutil.which("redis-server")
        if binary is None:
            print(
                "celery: no redis-server on PATH and no --redis URL, its column is skipped"
                " (apt-get install redis-server)",
                flush=True,
            )
            return None, ""
        redis_url = start_redis(stack, binary)
    celery: Any = importlib.import_module("celery")
    celery_errors: Any = importlib.import_module("celery.exceptions")
    redis: Any = importlib.import_module("redis")
    apps: Any = importlib.import_module("benchmarks.peers_celery")
    queue = f"peers-{os.getpid()}"  # never shares a queue with anything else on that server
    apps.app.conf.update(broker_url=redis_url, result_backend=redis_url, task_default_queue=queue)
    worker = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "benchmarks.peers_celery", "-b", redis_url,
         "--result-backend", redis_url, "worker", "--pool", "solo", "--queues", queue,
         "--hostname", f"{queue}@%h", "--without-gossip", "--without-mingle",
         "--without-heartbeat", "--loglevel", "WARNING"],
        stdout=subprocess.DEVNULL, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)},
    )  # fmt: skip
    stack.callback(stop_process, worker, 30)
    stack.callback(apps.app.close)
    echo = apps.echo.delay
    first = echo({"n": -1})
    deadline = time.monotonic() + 60
    while True:  # the task waits in the queue until the worker is up
        try:
            first.get(timeout=0.5)
            break
        except celery_errors.TimeoutError:
            if worker.poll() is not None:
                raise RuntimeError(f"the Celery worker exited ({worker.returncode})") from None
            if time.monotonic() > deadline:
                raise RuntimeError("the Celery worker did not answer within 60 s") from None
    server = redis.Redis.from_url(redis_url)
    server_version = server.info("server")["redis_version"]
    server.close()
    system = System("celery", lambda m: echo(m).get(timeout=REPLY_TIMEOUT), echo, get_each)
    versions = f"celery {celery.__version__}, redis-py {redis.__version__}, redis {server_version}"
    return system, versions


# --- the run -------------------------------------------------------------------------


Figures = dict[str, dict[str, list[float]]]


def measure(
    systems: Sequence[System], public: Public, rounds: int, seconds: float, warmup: float
) -> Figures:
    """Every system in every round, the order rotating; returns row -> column -> figures."""
    figures: Figures = {row: {s.name: [] for s in systems} for row in (SYNC, ASYNC)}
    for s in systems:  # first calls pay for connections, leases and imports
        public.sync(s.sync, warmup)
        pipelined(s, warmup)
    for r in range(rounds):
        k = r % len(systems)
        turn = [*systems[k:], *systems[:k]]
        for s in turn:
            # remote.py's loop (100 calls between clock reads), the same for every system
            figures[SYNC][s.name].append(public.sync(s.sync, seconds))
        for s in turn:
            figures[ASYNC][s.name].append(pipelined(s, seconds))
        done = "  ".join(f"{s.name} {figures[SYNC][s.name][-1]:,.0f}" for s in systems)
        print(f"round {r + 1}/{rounds}, sync round trips/s: {done}", flush=True)
    return figures


def report(figures: Figures) -> None:
    for row, columns in figures.items():
        n = len(next(iter(columns.values())))
        print(f"\n{row} ({UNITS[row]}), median [min-max] of {n} rounds")
        for name, values in columns.items():
            print(
                f"  {name:16s} {statistics.median(values):>9,.0f}"
                f"  [{min(values):,.0f}-{max(values):,.0f}]"
            )
    print("\nratios: of the medians [per-round min-max]")
    for row, columns in figures.items():
        ours = [name for name in columns if name.startswith(HEADLINE)]
        for mine, peer in ((m, p) for m in ours for p in columns if p not in ours):
            per_round = [a / b for a, b in zip(columns[mine], columns[peer], strict=True)]
            of_medians = statistics.median(columns[mine]) / statistics.median(columns[peer])
            label = f"{row}, {mine} / {peer}"
            print(f"  {label:52s} {of_medians:7.2f}x  [{min(per_round):.2f}-{max(per_round):.2f}]")
    print()
    for row, peer, goal in GOALS:
        if peer not in figures[row]:
            print(f"goal: {row} >= {goal:g}x {peer}: not measured ({peer} skipped)")
            continue
        ratio = statistics.median(figures[row][HEADLINE]) / statistics.median(figures[row][peer])
        verdict = "ok" if ratio >= goal else "MISSED"
        print(f"goal: {row} >= {goal:g}x {peer}: {ratio:.2f}x {verdict}")


def report_leftovers() -> None:
    """The last safety net: whatever this run started and did not stop is killed."""
    names = stop_descendants()
    if names:
        print(f"killed processes left running: {', '.join(sorted(set(names)))}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="two short rounds (a smoke run)")
    parser.add_argument("--rounds", type=int, default=7, help="measured rounds (default 7)")
    parser.add_argument("--seconds", type=float, default=1.0, help="per figure (default 1.0)")
    parser.add_argument(
        "--redis", metavar="URL", help="use this running Redis instead of starting redis-server"
    )
    parser.add_argument("--no-ray", action="store_true", help="skip Ray")
    parser.add_argument("--no-celery", action="store_true", help="skip Celery + Redis")
    args = parser.parse_args()
    rounds = 2 if args.quick else args.rounds
    seconds = 0.3 if args.quick else args.seconds
    if rounds < 1 or seconds <= 0:
        parser.error("--rounds must be >= 1 and --seconds > 0")

    load = os.getloadavg()
    print(
        f"python {sys.version.split()[0]}, taskmesh {taskmesh.__version__}, "
        f"{os.cpu_count()} cpus, load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}",
        flush=True,
    )
    # A SIGTERM unwinds the stack like Ctrl-C does: every process started here is stopped.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    with contextlib.ExitStack() as stack:
        stack.callback(report_leftovers)  # runs last
        systems, public = start_taskmesh(stack)
        versions = []
        starters: list[tuple[bool, Callable[[], tuple[System | None, str]]]] = [
            (args.no_ray, lambda: start_ray(stack)),
            (args.no_celery, lambda: start_celery(stack, args.redis)),
        ]
        for skipped, start in starters:
            if skipped:
                continue
            peer, version = start()
            if peer is not None:
                systems.append(peer)
                versions.append(version)
        if versions:
            print(", ".join(versions), flush=True)
        figures = measure(systems, public, rounds, seconds, warmup=min(seconds, 0.5))
    report(figures)
    load = os.getloadavg()
    print(f"load average at the end {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")


if __name__ == "__main__":
    main()
