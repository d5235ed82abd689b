"""Client commands: ``tell``, ``ask``, ``members``, ``actors``, ``routes``,
``leader`` and ``top``. Each connects as a client (no lease, no actors)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated, Any

import typer

from taskmesh.actors.names import validate_capability, validate_name
from taskmesh.cli.app import (
    ClusterOpt,
    ConfigOpt,
    EtcdCaOpt,
    EtcdCertOpt,
    EtcdKeyOpt,
    EtcdOpt,
    EtcdPasswordOpt,
    EtcdUserOpt,
    JsonOpt,
    KeysOpt,
    app,
    client_settings,
    etcd_security,
    parse_json,
    table,
    to_json,
)
from taskmesh.client import Client
from taskmesh.errors import ConfigError, RemoteError, TaskmeshError

TimeoutOpt = Annotated[float, typer.Option("--timeout", help="Seconds to wait for the reply.")]


@contextmanager
def connected(
    cluster: str | None,
    etcd: str | None,
    config: Any,
    keys: Any = None,
    timeout: float = 5.0,
    security: dict[str, Any] | None = None,
) -> Iterator[Client]:
    settings = client_settings(
        cluster=cluster, etcd=etcd, config=config, keys=keys, **(security or {})
    )
    client = Client(
        etcd=settings.etcd,
        cluster=settings.cluster,
        keys=settings.keys,
        ask_timeout=settings.ask_timeout,
        max_message_size=settings.max_message_size,
        start_timeout=timeout,
        etcd_user=settings.etcd_user,
        etcd_password=settings.etcd_password,
        etcd_ca=settings.etcd_ca,
        etcd_cert=settings.etcd_cert,
        etcd_key=settings.etcd_key,
        heartbeat_interval=settings.heartbeat_interval,
        suspect_after=settings.suspect_after,
    )
    client.start()
    try:
        yield client
    finally:
        client.close()


@app.command()
def tell(
    name: Annotated[str, typer.Argument(help="Actor name.")],
    message: Annotated[str, typer.Argument(help="The message, as JSON.")],
    cluster: ClusterOpt = None,
    etcd: EtcdOpt = None,
    config: ConfigOpt = None,
    etcd_ca: EtcdCaOpt = None,
    etcd_cert: EtcdCertOpt = None,
    etcd_key: EtcdKeyOpt = None,
    etcd_user: EtcdUserOpt = None,
    etcd_password: EtcdPasswordOpt = None,
    keys: KeysOpt = None,
) -> None:
    """Send a message to an actor without waiting (at most once)."""
    validate_name(name)
    payload = parse_json(message)
    with connected(
        cluster,
        etcd,
        config,
        keys,
        security=etcd_security(etcd_ca, etcd_cert, etcd_key, etcd_user, etcd_password),
    ) as client:
        if client.resolve(name) is None:
            raise ConfigError(f"no actor named {name!r} in cluster {client.cluster_name!r}")
        client.tell(name, payload)
        client.transport.flush()


@app.command()
def ask(
    name: Annotated[str, typer.Argument(help="Actor name (a capability with --capability).")],
    message: Annotated[str, typer.Argument(help="The message, as JSON.")],
    timeout: TimeoutOpt = 5.0,
    capability: Annotated[
        bool, typer.Option("--capability", help="Read NAME as a capability.")
    ] = False,
    cluster: ClusterOpt = None,
    etcd: EtcdOpt = None,
    config: ConfigOpt = None,
    etcd_ca: EtcdCaOpt = None,
    etcd_cert: EtcdCertOpt = None,
    etcd_key: EtcdKeyOpt = None,
    etcd_user: EtcdUserOpt = None,
    etcd_password: EtcdPasswordOpt = None,
    keys: KeysOpt = None,
) -> None:
    """Ask an actor and print its reply as JSON."""
    (validate_capability if capability else validate_name)(name)
    payload = parse_json(message)
    with connected(
        cluster,
        etcd,
        config,
        keys,
        timeout=timeout,
        security=etcd_security(etcd_ca, etcd_cert, etcd_key, etcd_user, etcd_password),
    ) as client:
        target = client.capability(name) if capability else client.ref(name)
        try:
            reply = target.ask(payload, timeout=timeout)
        except RemoteError as error:
            raise TaskmeshError(f"remote {error.type_name}: {error.message}") from None
    typer.echo(to_json(reply))


@app.command()
def members(
    as_json: JsonOpt = False,
    cluster: ClusterOpt = None,
    etcd: EtcdOpt = None,
    config: ConfigOpt = None,
    etcd_ca: EtcdCaOpt = None,
    etcd_cert: EtcdCertOpt = None,
    etcd_key: EtcdKeyOpt = None,
    etcd_user: EtcdUserOpt = None,
    etcd_password: EtcdPasswordOpt = None,
) -> None:
    """List the cluster's live members."""
    with connected(
        cluster,
        etcd,
        config,
        security=etcd_security(etcd_ca, etcd_cert, etcd_key, etcd_user, etcd_password),
    ) as client:
        leader = client.leader()
        rows = [
            {
                "node": m.node,
                "address": m.address,
                "host": m.host,
                "pid": m.pid,
                "capabilities": ",".join(sorted(m.capabilities)),
                "cpu": round(m.load.cpu, 1),
                "memory": round(m.load.memory, 1),
                "mailbox": m.load.mailbox,
                "leader": m.node == leader,
            }
            for m in sorted(client.members().values(), key=lambda m: m.node)
        ]
    typer.echo(to_json(rows) if as_json else table(rows, list(rows[0]) if rows else ["node"]))


@app.command()
def actors(
    as_json: JsonOpt = False,
    cluster: ClusterOpt = None,
    etcd: EtcdOpt = None,
    config: ConfigOpt = None,
    etcd_ca: EtcdCaOpt = None,
    etcd_cert: EtcdCertOpt = None,
    etcd_key: EtcdKeyOpt = None,
    etcd_user: EtcdUserOpt = None,
    etcd_password: EtcdPasswordOpt = None,
) -> None:
    """List the cluster-wide actor names and where they run."""
    with connected(
        cluster,
        etcd,
        config,
        security=etcd_security(etcd_ca, etcd_cert, etcd_key, etcd_user, etcd_password),
    ) as client:
        rows = [
            {"name": name, "node": node, "address": address}
            for name, (node, address) in sorted(client.actors().items())
        ]
    typer.echo(to_json(rows) if as_json else table(rows, ["name", "node", "address"]))


@app.command()
def routes(
    as_json: JsonOpt = False,
    cluster: ClusterOpt = None,
    etcd: EtcdOpt = None,
    config: ConfigOpt = None,
    etcd_ca: EtcdCaOpt = None,
    etcd_cert: EtcdCertOpt = None,
    etcd_key: EtcdKeyOpt = None,
    etcd_user: EtcdUserOpt = None,
    etcd_password: EtcdPasswordOpt = None,
) -> None:
    """List the capability routing table."""
    with connected(
        cluster,
        etcd,
        config,
        security=etcd_security(etcd_ca, etcd_cert, etcd_key, etcd_user, etcd_password),
    ) as client:
        rows = [
            {"capability": capability, "actor": r.actor, "node": r.node, "address": r.address}
            for capability, holders in sorted(client.routes().items())
            for r in sorted(holders, key=lambda r: (r.node, r.actor))
        ]
    typer.echo(
        to_json(rows) if as_json else table(rows, ["capability", "actor", "node", "address"])
    )


@app.command()
def leader(
    as_json: JsonOpt = False,
    cluster: ClusterOpt = None,
    etcd: EtcdOpt = None,
    config: ConfigOpt = None,
    etcd_ca: EtcdCaOpt = None,
    etcd_cert: EtcdCertOpt = None,
    etcd_key: EtcdKeyOpt = None,
    etcd_user: EtcdUserOpt = None,
    etcd_password: EtcdPasswordOpt = None,
) -> None:
    """Print the leading node's id."""
    with connected(
        cluster,
        etcd,
        config,
        security=etcd_security(etcd_ca, etcd_cert, etcd_key, etcd_user, etcd_password),
    ) as client:
        current = client.leader()
    if as_json:
        typer.echo(to_json({"leader": current}))
    elif current is None:
        raise ConfigError("the cluster has no leader now")
    else:
        typer.echo(current)


@app.command()
def top(
    interval: Annotated[float, typer.Option(help="Seconds between refreshes.")] = 1.0,
    iterations: Annotated[int, typer.Option(help="Stop after N frames (0: until Ctrl-C).")] = 0,
    cluster: ClusterOpt = None,
    etcd: EtcdOpt = None,
    config: ConfigOpt = None,
    etcd_ca: EtcdCaOpt = None,
    etcd_cert: EtcdCertOpt = None,
    etcd_key: EtcdKeyOpt = None,
    etcd_user: EtcdUserOpt = None,
    etcd_password: EtcdPasswordOpt = None,
) -> None:
    """A live view of nodes, actors and message rates."""
    with connected(
        cluster,
        etcd,
        config,
        security=etcd_security(etcd_ca, etcd_cert, etcd_key, etcd_user, etcd_password),
    ) as client:
        previous: dict[str, tuple[float, int]] = {}
        frame = 0
        while True:
            frame += 1
            typer.echo(render_top(client, previous), nl=False)
            if iterations and frame >= iterations:
                return
            time.sleep(interval)


def render_top(client: Client, previous: dict[str, tuple[float, int]]) -> str:
    """One frame of ``taskmesh top``. Each node publishes its own message rate
    (only when it changes meaningfully); ``previous`` is kept for callers that
    pass it between frames."""
    leader = client.leader()
    names = client.actors()
    per_node: dict[str, int] = {}
    for node, _ in names.values():
        per_node[node] = per_node.get(node, 0) + 1
    rows = []
    for m in sorted(client.members().values(), key=lambda m: m.node):
        previous[m.node] = (time.monotonic(), m.load.messages)
        rows.append(
            {
                "node": ("* " if m.node == leader else "  ") + m.node,
                "address": m.address,
                "actors": per_node.get(m.node, 0),
                "msg/s": f"{m.load.rate:.0f}",
                "mailbox": m.load.mailbox,
                "cpu%": f"{m.load.cpu:.0f}",
                "mem%": f"{m.load.memory:.0f}",
            }
        )
    header = (
        f"\x1b[2J\x1b[Htaskmesh top - cluster {client.cluster_name} - "
        f"{len(rows)} nodes, {len(names)} named actors, leader {leader or '-'}\n\n"
    )
    columns = ["node", "address", "actors", "msg/s", "mailbox", "cpu%", "mem%"]
    return header + table(rows, columns) + "\n"
