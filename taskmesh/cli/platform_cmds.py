"""Platform commands: ``schedules``, ``schedule add|remove``, ``workflows``,
``limits`` and ``limit``.

They read and write etcd directly (no transport, no lease): a schedule is a
record in etcd, which the leader picks up through its watch, and a limit
one that every node and client watches.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated

import typer

from taskmesh.cli.app import (
    ClusterOpt,
    ConfigOpt,
    EtcdOpt,
    JsonOpt,
    app,
    client_settings,
    parse_json,
    table,
    to_json,
)
from taskmesh.cluster.etcd import EtcdClient
from taskmesh.errors import ConfigError
from taskmesh.platform.limits import Limit, LimitStore
from taskmesh.platform.records import PlatformKeys
from taskmesh.platform.schedules import Schedule, ScheduleStore
from taskmesh.platform.workflow_store import WorkflowStore
from taskmesh.platform.workflows import workflow_infos

schedule_app = typer.Typer(
    name="schedule", help="Add or remove a cluster-wide schedule.", no_args_is_help=True
)
app.add_typer(schedule_app)


@contextmanager
def etcd_of(
    cluster: str | None, etcd: str | None, config: object
) -> Iterator[tuple[EtcdClient, PlatformKeys]]:
    settings = client_settings(cluster=cluster, etcd=etcd, config=config)
    client = EtcdClient(
        settings.etcd,
        user=settings.etcd_user,
        password=settings.etcd_password,
        ca_cert=str(settings.etcd_ca) if settings.etcd_ca else None,
        cert_cert=str(settings.etcd_cert) if settings.etcd_cert else None,
        cert_key=str(settings.etcd_key) if settings.etcd_key else None,
    )
    try:
        yield client, PlatformKeys(settings.cluster)
    finally:
        client.close()


def _when(t: float | None) -> str:
    return "-" if t is None else time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(t))


@app.command()
def schedules(
    as_json: JsonOpt = False,
    cluster: ClusterOpt = None,
    etcd: EtcdOpt = None,
    config: ConfigOpt = None,
) -> None:
    """List the schedules with their last and next ticks."""
    with etcd_of(cluster, etcd, config) as (client, keys):
        rows = [info.to_json() for info in ScheduleStore(client, keys).infos()]
    if as_json:
        typer.echo(to_json(rows))
        return
    rows = [{k: "-" if v is None else v for k, v in row.items()} for row in rows]
    columns = ["name", "trigger", "to", "next_due", "last_tick", "last_status", "delivered",
               "dropped", "last_error"]  # fmt: skip
    typer.echo(table(rows, columns))


@schedule_app.command("add")
def schedule_add(
    name: Annotated[str, typer.Argument(help="Schedule name (unique in the cluster).")],
    to: Annotated[str, typer.Option("--to", help="Actor name (a capability with --capability).")],
    cron: Annotated[
        str | None, typer.Option(help="Cron expression, e.g. '0 2 * * *'.", show_default=False)
    ] = None,
    every: Annotated[
        float | None, typer.Option(help="Interval in seconds.", show_default=False)
    ] = None,
    message: Annotated[str, typer.Option(help="The message, as JSON.")] = "null",
    capability: Annotated[
        bool, typer.Option("--capability", help="Read --to as a capability.")
    ] = False,
    misfire: Annotated[str, typer.Option(help="skip or run_once.")] = "skip",
    misfire_grace: Annotated[float, typer.Option(help="Seconds a tick may be late.")] = 60.0,
    timezone: Annotated[str, typer.Option(help="Time zone of the cron expression.")] = "UTC",
    timeout: Annotated[float, typer.Option(help="Seconds each delivery may take.")] = 30.0,
    retries: Annotated[int, typer.Option(help="Re-sends after a lost node.")] = 3,
    with_tick: Annotated[
        bool, typer.Option("--with-tick", help="Deliver {schedule, tick, message}.")
    ] = False,
    cluster: ClusterOpt = None,
    etcd: EtcdOpt = None,
    config: ConfigOpt = None,
) -> None:
    """Add (or replace) a schedule; the leader fires it."""
    schedule = Schedule(
        name=name, to=to, message=parse_json(message), cron=cron, every=every,
        capability=capability, misfire=misfire, misfire_grace=misfire_grace,
        timezone=timezone, timeout=timeout, retries=retries, with_tick=with_tick,
    )  # fmt: skip
    with etcd_of(cluster, etcd, config) as (client, keys):
        stored = ScheduleStore(client, keys).put(schedule)
    typer.echo(f"schedule {stored.name}: {stored.trigger().describe()} -> {stored.to}")


@schedule_app.command("remove")
def schedule_remove(
    name: Annotated[str, typer.Argument(help="Schedule name.")],
    cluster: ClusterOpt = None,
    etcd: EtcdOpt = None,
    config: ConfigOpt = None,
) -> None:
    """Remove a schedule (and its progress)."""
    with etcd_of(cluster, etcd, config) as (client, keys):
        removed = ScheduleStore(client, keys).remove(name)
    if not removed:
        raise ConfigError(f"no schedule named {name!r}")
    typer.echo(f"schedule {name} removed")


@app.command()
def workflows(
    as_json: JsonOpt = False,
    cluster: ClusterOpt = None,
    etcd: EtcdOpt = None,
    config: ConfigOpt = None,
) -> None:
    """List running and recently finished workflows."""
    with etcd_of(cluster, etcd, config) as (client, keys):
        infos = workflow_infos(WorkflowStore(client, keys))
    rows = [info.to_json() for info in infos]
    if as_json:
        typer.echo(to_json(rows))
        return
    for row in rows:
        row["progress"] = f"{row['done']}/{row['steps']}"
        row["created"] = _when(row["created"])
        row["finished"] = _when(row["finished"])
        row["node"] = row["node"] or "-"
        row["error"] = row["error"] or "-"
    columns = ["id", "status", "progress", "node", "created", "finished", "error"]
    typer.echo(table(rows, columns))


@app.command()
def limits(
    as_json: JsonOpt = False,
    cluster: ClusterOpt = None,
    etcd: EtcdOpt = None,
    config: ConfigOpt = None,
) -> None:
    """List the cluster-wide limits and their state."""
    with etcd_of(cluster, etcd, config) as (client, keys):
        rows = [info.to_json() for info in LimitStore(client, keys).infos()]
    if as_json:
        typer.echo(to_json(rows))
        return
    for row in rows:
        row["rate"] = "-" if row["rate"] is None else f"{row['rate']:g}/s"
        row["burst"] = "-" if row["burst"] is None else f"{row['burst']:g}"
        row["tokens"] = "-" if row["tokens"] is None else f"{row['tokens']:g}"
        concurrency = row["concurrency"]
        per = " per key" if row["per_key"] else ""
        row["concurrency"] = "-" if concurrency is None else f"{concurrency}{per}"
        row["held"] = "-" if concurrency is None else row["held"]
    columns = ["capability", "rate", "burst", "tokens", "concurrency", "held", "holders"]
    typer.echo(table(rows, columns))


@app.command()
def limit(
    capability: Annotated[
        str, typer.Argument(help="The capability to limit.", metavar="CAP", show_default=False)
    ],
    rate: Annotated[
        float | None,
        typer.Option(
            help="Asks and tells a second, cluster-wide.", metavar="R", show_default=False
        ),
    ] = None,
    concurrency: Annotated[
        int | None,
        typer.Option(help="Asks in flight, cluster-wide.", metavar="C", show_default=False),
    ] = None,
    burst: Annotated[
        float | None,
        typer.Option(
            help="Tokens the rate may spend at once.  [default: a tenth of a second's]",
            metavar="TOKENS",
            show_default=False,
        ),
    ] = None,
    per_key: Annotated[
        bool, typer.Option("--per-key", help="Count --concurrency per key= of the ask.")
    ] = False,
    remove: Annotated[bool, typer.Option("--remove", help="Remove the limit.")] = False,
    cluster: ClusterOpt = None,
    etcd: EtcdOpt = None,
    config: ConfigOpt = None,
) -> None:
    """Set, replace or --remove a capability's limit."""
    if remove and (rate is not None or concurrency is not None or burst is not None or per_key):
        raise ConfigError("--remove takes no --rate, --concurrency, --burst or --per-key")
    wanted = None
    if not remove:  # a bad limit is refused before etcd is asked
        wanted = Limit(capability, rate=rate, concurrency=concurrency, burst=burst, per_key=per_key)
    with etcd_of(cluster, etcd, config) as (client, keys):
        store = LimitStore(client, keys)
        if wanted is None:
            if not store.remove(capability):
                raise ConfigError(f"no limit on {capability!r}")
            typer.echo(f"limit on {capability} removed")
            return
        store.put(wanted)
    typer.echo(f"limit on {wanted.capability}: {wanted.describe()}")
