"""Schedules fire every tick once while the leader is killed, twice."""

from __future__ import annotations

import json
import signal
import threading
import time
import uuid
from datetime import datetime
from functools import partial
from typing import Any

import taskmesh
from taskmesh.platform import ScheduleInfo
from taskmesh.platform.records import PlatformKeys, encode
from taskmesh.platform.triggers import tick_id
from tests.integration.node.support import NodeProcess, cli, running_node
from tests.waiting import wait_until


class Ticks(taskmesh.Actor):
    """Records every tick it is delivered, by schedule."""

    def on_start(self) -> None:
        self.seen: dict[str, list[str]] = {}
        self.lock = threading.Lock()

    def receive(self, message: Any) -> Any:
        if message == "seen":
            return {name: list(ticks) for name, ticks in self.seen.items()}
        self.seen.setdefault(message["schedule"], []).append(message["tick"])
        return None


def ms(tick: str) -> int:
    return round(datetime.fromisoformat(tick.replace("Z", "+00:00")).timestamp() * 1000)


def test_every_tick_is_delivered_once_while_the_leader_is_killed_twice(etcd_url: str) -> None:
    cluster = "t" + uuid.uuid4().hex[:8]
    flags = ["--etcd", etcd_url, "--cluster", cluster, "--lease-ttl", "2"]
    with (
        running_node(*flags, name="first") as first,
        running_node(*flags, name="second") as second,
        taskmesh.Node(cluster=cluster, etcd=etcd_url, name="keeper", lease_ttl=2) as keeper,
    ):
        keeper.spawn(Ticks, name="ticks")
        keeper.schedule("every2", every=2.0, to="ticks", message="a", with_tick=True)
        # started 5.5 s ago with a grace of 0.5 s: its first ticks have misfired
        keeper.schedule("every1", every=1.0, to="ticks", message="b", with_tick=True,
                        misfire="run_once", misfire_grace=0.5, start=time.time() - 5.5)  # fmt: skip

        # hourly, so it fires only the tick the test leaves uncertain (below)
        hourly = keeper.schedule("hourly", every=3600.0, to="ticks", message="c", with_tick=True)

        def seen() -> dict[str, list[str]]:
            return keeper.ref("ticks").ask("seen", timeout=10.0)  # type: ignore[no-any-return]

        def more_ticks(than: int) -> bool:
            return len(seen().get("every2", [])) >= than + 3

        member = keeper.member
        assert member is not None and hourly.start is not None

        def leads(name: str) -> bool:
            return member.leader == name

        def led_by_another(name: str) -> bool:
            return member.leader not in (None, name)

        for victim in (first, second):
            wait_until(partial(leads, victim.name), timeout=30.0, message=f"{victim.name} to lead")
            wait_until(partial(more_ticks, len(seen().get("every2", []))), timeout=30.0,
                       message="ticks under this leader")  # fmt: skip
            if victim is second:
                uncertain = _leave_a_tick_uncertain(keeper, cluster, hourly.start + 3600.0)
            _kill(victim)
            wait_until(partial(led_by_another, victim.name), timeout=30.0, message="a new leader")
        wait_until(partial(more_ticks, len(seen().get("every2", []))), timeout=30.0,
                   message="ticks under the last leader")  # fmt: skip

        settled = wait_until(partial(_settled, keeper), message="the last ticks confirmed")
        infos = {info.schedule.name: info for info in settled}
        received = seen()
        for name, interval in (("every2", 2000), ("every1", 1000)):
            info = infos[name]
            assert info.last_tick is not None
            ticks = [t for t in received[name] if ms(t) <= ms(info.last_tick)]
            assert len(ticks) == len(set(ticks)), f"{name}: a tick was delivered twice: {ticks}"
            due = [ms(t) for t in ticks]
            assert due == sorted(due), f"{name}: ticks out of order: {ticks}"
            assert info.schedule.start is not None
            first_due = round(info.schedule.start * 1000) + interval
            assert all((d - first_due) % interval == 0 for d in due), f"{name}: off the grid"
            every_tick = (ms(info.last_tick) - first_due) // interval + 1
            assert len(ticks) + info.dropped == every_tick, (
                f"{name}: of {every_tick} ticks, {len(ticks)} delivered and {info.dropped} "
                "counted as misfired"
            )
            assert info.delivered == len(ticks)
        assert received["hourly"] == [uncertain], "the new leader re-sent it; it ran once"
        assert infos["hourly"].last_status == "delivered"
        assert infos["every2"].dropped == 0, "a failover is within the grace: no tick is lost"
        assert infos["every1"].dropped >= 4, "beyond its grace, run_once coalesces misfired ticks"

        # the CLI reads and changes the same schedules
        where = ["--etcd", etcd_url, "--cluster", cluster]
        listed = json.loads(cli("schedules", "--json", *where).stdout)
        assert {row["name"]: row["trigger"] for row in listed} == {
            "every1": "every 1s", "every2": "every 2s", "hourly": "every 3600s",
        }  # fmt: skip
        added = cli("schedule", "add", "nightly", "--cron", "0 2 * * *", "--to", "reports",
                    "--capability", "--message", '{"kind": "daily"}', *where)  # fmt: skip
        assert added.returncode == 0, added.stderr
        nightly = {i.schedule.name: i for i in keeper.schedules()}["nightly"]
        assert nightly.schedule.message == {"kind": "daily"} and nightly.schedule.capability
        assert cli("schedule", "remove", "nightly", *where).returncode == 0
        missing_one = cli("schedule", "remove", "nightly", *where)
        assert missing_one.returncode == 1
        assert missing_one.stderr.strip() == "taskmesh: error: no schedule named 'nightly'"
        bad = cli(
            "schedule", "add", "x", "--every", "5", "--cron", "* * * * *", "--to", "r", *where
        )
        assert bad.returncode == 1 and "exactly one of cron= and every=" in bad.stderr
        assert keeper.unschedule("every1") and keeper.unschedule("every2")


def _kill(node: NodeProcess) -> None:
    node.proc.send_signal(signal.SIGKILL)
    node.proc.wait(30)


def _leave_a_tick_uncertain(node: taskmesh.Node, cluster: str, due: float) -> str:
    """Do what a leader does for a tick and die before confirming it: record
    the tick as ``sending`` and deliver it under its key. The next leader
    must deliver it again, and the receiver must not run it twice."""
    assert node.member is not None
    tick = tick_id(due)
    state = {"tick": tick, "due": due, "status": "sending", "token": 0, "fired_at": time.time()}
    node.member.client.put(PlatformKeys(cluster).schedule_state("hourly"), encode(state))
    message = {"schedule": "hourly", "tick": tick, "message": "c"}
    node.ref("ticks").ask(message, timeout=10.0, idempotency_key=f"hourly:{tick}")
    return tick


def _settled(node: taskmesh.Node) -> list[ScheduleInfo]:
    """The schedules once each one's last tick is confirmed (else [])."""
    infos = node.schedules()
    return infos if all(i.last_status == "delivered" for i in infos) else []
