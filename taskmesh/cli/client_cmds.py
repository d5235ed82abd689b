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
from taskmesh.cli.etcd_check import check_etcd
from taskmesh.client import Client
from taskmesh.cluster.routing import STRATEGIES
from taskmesh.errors import ActorNotFound, ConfigError, RemoteError, TaskmeshError

TimeoutOpt = Annotated[
    float,
    typer.Option("--timeout", help="Seconds to wait for the reply (> 0).", metavar="SECONDS"),
]
CapabilityFlag = Annotated[
    bool, typer.Option("--capability", help="Read NAME as a capability, not an actor name.")
]
StrategyOpt = Annotated[
    str,
    typer.Option(
        "--strategy",
        help="With --capability: round_robin (from a random holder), least_loaded, "
        "consistent_hash (with --key) or, for tell, broadcast.",
        metavar="STRATEGY",
    ),
]
KeyOpt = Annotated[
    str | None,
    typer.Option(
        "--key", help="Routing key for consistent_hash.", metavar="KEY", show_default=False
    ),
]

CONNECT_TIMEOUT = 5.0
"""Seconds a client command waits for its first view of the cluster."""


@contextmanager
def connected(
    cluster: str | None,
    etcd: str | None,
    config: Any,
    keys: Any = None,
    security: dict[str, Any] | None = None,
) -> Iterator[Client]:
    """A started client for one command; fails within a few seconds, naming
    the URL, when etcd cannot be reached."""
    settings = client_settings(
        cluster=cluster, etcd=etcd, config=config, keys=keys, **(security or {})
    )
    check_etcd(settings)
    client = Client(
        etcd=settings.etcd,
        cluster=settings.cluster,
        keys=settings.keys,
        ask_timeout=settings.ask_timeout,
        send_timeout=settings.send_timeout,
        flow_window=settings.flow_window,
        max_message_size=settings.max_message_size,
        start_timeout=CONNECT_TIMEOUT,
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


def not_found(client: Client, name: str, capability: bool) -> ConfigError:
    """The one wording of an unknown target, for ask and tell alike."""
    what = f"holds the capability {name!r}" if capability else f"named {name!r}"
    return ConfigError(f"no actor {what} in cluster {client.cluster_name!r}")


def check_target(name: str, capability: bool, strategy: str, key: str | None) -> None:
    """Refuse a bad name or option combination before connecting."""
    (validate_capability if capability else validate_name)(name)
    if not capability and (strategy != "round_robin" or key is not None):
        raise ConfigError("--strategy and --key apply with --capability only")
    if strategy not in STRATEGIES:
        raise ConfigError(f"--strategy must be one of {', '.join(STRATEGIES)}, not {strategy!r}")
    if strategy == "consistent_hash" and key is None:
        raise ConfigError("--strategy consistent_hash needs --key KEY")


def target_of(
    client: Client, name: str, capability: bool, strategy: str, key: str | None
) -> tuple[Any, dict[str, Any]]:
    """The ref a command sends to, and the keyword arguments its sends need."""
    if not capability:
        if client.resolve(name) is None:
            raise not_found(client, name, capability=False)
        return client.ref(name), {}
    ref = client.capability(name, strategy=strategy)
    if not client.routes().get(name):
        raise not_found(client, name, capability=True)
    return ref, ({"key": key} if key is not None else {})


@app.command()
def tell(
    name: Annotated[
        str, typer.Argument(help="Actor name (a capability with --capability).", metavar="NAME")
    ],
    message: Annotated[str, typer.Argument(help="The message, as JSON.", metavar="JSON")],
    capability: CapabilityFlag = False,
    strategy: StrategyOpt = "round_robin",
    key: KeyOpt = None,
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
    check_target(name, capability, strategy, key)
    payload = parse_json(message)
    with connected(
        cluster,
        etcd,
        config,
        keys,
        security=etcd_security(etcd_ca, etcd_cert, etcd_key, etcd_user, etcd_password),
    ) as client:
        target, options = target_of(client, name, capability, strategy, key)
        target.tell(payload, **options)
        client.transport.flush()


@app.command()
def ask(
    name: Annotated[
        str, typer.Argument(help="Actor name (a capability with --capability).", metavar="NAME")
    ],
    message: Annotated[str, typer.Argument(help="The message, as JSON.", metavar="JSON")],
    timeout: TimeoutOpt = 5.0,
    capability: CapabilityFlag = False,
    strategy: StrategyOpt = "round_robin",
    key: KeyOpt = None,
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
    if not timeout > 0:
        raise ConfigError(f"--timeout must be more than 0 seconds, got {timeout:g}")
    if strategy == "broadcast":
        raise ConfigError("a broadcast has no single reply: use tell --capability")
    check_target(name, capability, strategy, key)
    payload = parse_json(message)
    with connected(
        cluster,
        etcd,
        config,
        keys,
        security=etcd_security(etcd_ca, etcd_cert, etcd_key, etcd_user, etcd_password),
    ) as client:
        target, options = target_of(client, name, capability, strategy, key)
        try:
            reply = target.ask(payload, timeout=timeout, **options)
        except RemoteError as error:
            raise TaskmeshError(f"remote {error.type_name}: {error.message}") from None
        except ActorNotFound:
            raise not_found(client, name, capability) from None
    typer.echo(to_json(reply))


@app.command(short_help="List the live members, their load and the leader.")
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
    """List the cluster's live members: host CPU and memory use in percent,
    messages queued in the node's mailboxes, and the leader."""
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
                "cpu%": round(m.load.cpu, 1),
                "mem%": round(m.load.memory, 1),
                "queued": m.load.mailbox,
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
    interval: Annotated[
        float, typer.Option(help="Seconds between refreshes.", metavar="SECONDS")
    ] = 1.0,
    iterations: Annotated[
        int, typer.Option(help="Stop after N frames (0: until Ctrl-C).", metavar="N")
    ] = 0,
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
