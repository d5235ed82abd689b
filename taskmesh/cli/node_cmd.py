"""``taskmesh node``: run a node until SIGTERM or SIGINT, then drain.

What it prints on stdout, one line each, for people and scripts:

    taskmesh: embedded etcd at http://127.0.0.1:PORT (join with --etcd http://127.0.0.1:PORT)
    taskmesh: node NAME of cluster CLUSTER at tcp://HOST:PORT
    taskmesh: metrics at http://HOST:PORT/metrics
    taskmesh: cluster page at http://HOST:PORT/
    taskmesh: ready
    taskmesh: stopped
"""

from __future__ import annotations

import importlib
import logging
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer
from prometheus_client import CollectorRegistry

from taskmesh.cli.app import (
    ClusterOpt,
    ConfigOpt,
    EtcdCaOpt,
    EtcdCertOpt,
    EtcdKeyOpt,
    EtcdPasswordOpt,
    EtcdUserOpt,
    KeysOpt,
    app,
    etcd_security,
)
from taskmesh.cli.etcd_check import check_etcd
from taskmesh.cli.settings import Settings, load_settings
from taskmesh.cli.signals import StopSignals
from taskmesh.entities.metrics import EntityCollector
from taskmesh.errors import ConfigError, TaskmeshError
from taskmesh.node import Node
from taskmesh.ops import OpsServer, configure_logging
from taskmesh.ops.clusterview import ClusterView, NodeSource
from taskmesh.ops.metrics import NodeCollector

log = logging.getLogger("taskmesh.cli")


def say(line: str) -> None:
    """One status line on stdout, flushed at once (scripts wait for them).

    One ``write`` per line: ``print`` writes the newline separately, and app
    threads printing meanwhile could land between the two."""
    sys.stdout.write(f"taskmesh: {line}\n")
    sys.stdout.flush()


def _opt(help: str, metavar: str, default: object = None) -> Any:
    """An option of ``node``; ``default`` is only shown: the real one comes
    from :class:`Settings`, after the environment and the TOML file."""
    shown = "" if default is None else f"  [default: {default}]"
    return typer.Option(help=help + shown, metavar=metavar, show_default=False)


_DEFAULTS = Settings()


@app.command("node", short_help="Run a node (with an embedded etcd unless --etcd).")
def node_command(
    cluster: ClusterOpt = None,
    etcd: Annotated[
        str | None,
        typer.Option(
            "--etcd",
            help="etcd endpoint URL(s), comma-separated; without it the node starts an "
            "embedded etcd and prints its URL.",
            metavar="URL[,URL...]",
            show_default=False,
        ),
    ] = None,
    listen: Annotated[
        str | None,
        _opt(
            "ZeroMQ address peers dial; port 0 picks a free one.",
            "tcp://HOST:PORT",
            _DEFAULTS.listen,
        ),
    ] = None,
    name: Annotated[
        str | None, _opt("Node name in the cluster.", "NAME", "HOST-PID-RANDOM")
    ] = None,
    capability: Annotated[
        list[str] | None,
        typer.Option(
            "--capability", help="Node label; repeat for more.", metavar="CAP", show_default=False
        ),
    ] = None,
    app_: Annotated[
        list[str] | None,
        typer.Option(
            "--app",
            help="MODULE:FUNCTION called with the node once it runs; repeatable.",
            metavar="MODULE:FUNCTION",
            show_default=False,
        ),
    ] = None,
    metrics_port: Annotated[
        int | None,
        _opt(
            "Serve the cluster page (/), /api/cluster, /metrics, /healthz and /readyz "
            "on this port (0: a free one).",
            "PORT",
            "off",
        ),
    ] = None,
    metrics_host: Annotated[
        str | None,
        _opt("Address of that port (0.0.0.0 for remote scrapers).", "HOST", _DEFAULTS.metrics_host),
    ] = None,
    keys: KeysOpt = None,
    config: ConfigOpt = None,
    log_format: Annotated[
        str | None, _opt("Log lines as text or json.", "text|json", _DEFAULTS.log_format)
    ] = None,
    log_level: Annotated[
        str | None, _opt("DEBUG, INFO, WARNING or ERROR.", "LEVEL", _DEFAULTS.log_level)
    ] = None,
    data_dir: Annotated[
        Path | None, _opt("Embedded etcd's data directory.", "DIR", "a temporary directory")
    ] = None,
    lease_ttl: Annotated[
        float | None,
        _opt(
            "Seconds before a silent node's names and routes expire.",
            "SECONDS",
            _DEFAULTS.lease_ttl,
        ),
    ] = None,
    grace_period: Annotated[
        float | None,
        _opt(
            "Seconds in-flight work may take on SIGTERM or Ctrl-C.",
            "SECONDS",
            _DEFAULTS.grace_period,
        ),
    ] = None,
    send_timeout: Annotated[
        float | None,
        _opt(
            "Seconds a tell to a full mailbox waits for room before it fails.",
            "SECONDS",
            _DEFAULTS.send_timeout,
        ),
    ] = None,
    profile: Annotated[
        str | None,
        _opt("Timing profile: default, or edge for slow, flaky links.", "NAME", "default"),
    ] = None,
    heartbeat_interval: Annotated[
        float | None,
        _opt("Seconds between heartbeats to each peer.", "SECONDS", "0.2 (edge: 0.5)"),
    ] = None,
    suspect_after: Annotated[
        float | None,
        _opt("Seconds of peer silence before routing around it.", "SECONDS", "0.9 (edge: 3)"),
    ] = None,
    advertise: Annotated[
        str | None,
        _opt("Address published for peers to dial.", "tcp://HOST:PORT", "the listen address"),
    ] = None,
    claim_timeout: Annotated[
        float | None,
        _opt("Seconds a named spawn waits for etcd before it fails.", "SECONDS", 15.0),
    ] = None,
    start_timeout: Annotated[
        float | None,
        _opt("Seconds start waits for etcd's first answers before it fails.", "SECONDS", 15.0),
    ] = None,
    compaction_interval: Annotated[
        float | None,
        _opt("Seconds between the leader's compactions of etcd (0: off).", "SECONDS", 300.0),
    ] = None,
    otel_endpoint: Annotated[
        str | None,
        _opt(
            "Send traces over OTLP/HTTP to this URL (needs taskmesh[otel]).",
            "URL",
            "off",
        ),
    ] = None,
    etcd_ca: EtcdCaOpt = None,
    etcd_cert: EtcdCertOpt = None,
    etcd_key: EtcdKeyOpt = None,
    etcd_user: EtcdUserOpt = None,
    etcd_password: EtcdPasswordOpt = None,
) -> None:
    """Run a node: host actors and join the cluster (with an embedded etcd
    unless --etcd). Settings come from flags, then TASKMESH_* variables,
    then --config FILE, then the defaults shown."""
    flags: dict[str, Any] = {
        "cluster": cluster,
        "listen": listen,
        "name": name,
        "capabilities": tuple(capability or ()),
        "apps": tuple(app_ or ()),
        "metrics_port": metrics_port,
        "metrics_host": metrics_host,
        "keys": keys,
        "log_format": log_format,
        "log_level": log_level,
        "data_dir": data_dir,
        "lease_ttl": lease_ttl,
        "grace_period": grace_period,
        "send_timeout": send_timeout,
        "profile": profile,
        "heartbeat_interval": heartbeat_interval,
        "suspect_after": suspect_after,
        "advertise": advertise,
        "claim_timeout": claim_timeout,
        "start_timeout": start_timeout,
        "compaction_interval": compaction_interval,
        "otel_endpoint": otel_endpoint,
        **etcd_security(etcd_ca, etcd_cert, etcd_key, etcd_user, etcd_password),
    }
    if etcd:
        flags["etcd"] = tuple(part.strip() for part in etcd.split(",") if part.strip())
    settings = load_settings(flags, environ=os.environ, config=config)
    configure_logging(settings.log_format, settings.log_level)
    run_node(settings)


def run_node(settings: Settings) -> None:
    """Start, run the apps, serve until a signal, drain; raises on failure."""
    apps = [load_app(spec) for spec in settings.apps]
    if settings.etcd:
        check_etcd(settings)
    with StopSignals() as signals:
        _serve(settings, apps, signals)
    say("stopped")


def _serve(settings: Settings, apps: list[Callable[[Node], Any]], signals: StopSignals) -> None:
    """Main thread: start the node, run the apps, wait for a stop signal, drain."""
    node = Node(
        cluster=settings.cluster,
        etcd=list(settings.etcd) or None,
        listen=settings.listen,
        name=settings.name,
        capabilities=settings.capabilities,
        keys=settings.keys,
        data_dir=settings.data_dir,
        lease_ttl=settings.lease_ttl,
        mailbox_size=settings.mailbox_size,
        ask_timeout=settings.ask_timeout,
        max_message_size=settings.max_message_size,
        grace_period=settings.grace_period,
        etcd_user=settings.etcd_user,
        etcd_password=settings.etcd_password,
        etcd_ca=settings.etcd_ca,
        etcd_cert=settings.etcd_cert,
        etcd_key=settings.etcd_key,
        send_timeout=settings.send_timeout,
        flow_window=settings.flow_window,
        claim_timeout=settings.claim_timeout,
        start_timeout=settings.start_timeout,
        compaction_interval=settings.compaction_interval,
        heartbeat_interval=settings.heartbeat_interval,
        suspect_after=settings.suspect_after,
        advertise=settings.advertise,
        otel_endpoint=settings.otel_endpoint,
    )
    ops: OpsServer | None = None
    apps_done = False
    try:
        if settings.metrics_port is not None:
            registry = CollectorRegistry()
            registry.register(NodeCollector(node))
            registry.register(EntityCollector(node))
            view = ClusterView(NodeSource(node), local=node)
            ops = OpsServer(
                settings.metrics_host,
                settings.metrics_port,
                registry=registry,
                ready=lambda: apps_done and node.ready(),
                healthy=lambda: node.running,
                cluster=view.collect,
            )
            ops.start()
        node.start()
        if node.embedded_etcd is not None:
            url = node.embedded_etcd.endpoint
            say(f"embedded etcd at {url} (join with --etcd {url})")
        say(f"node {node.node_id} of cluster {settings.cluster} at {node.address}")
        if ops is not None:
            say(f"metrics at {ops.url}/metrics")
            say(f"cluster page at {ops.url}/")
        for spec, function in zip(settings.apps, apps, strict=True):
            try:
                function(node)
            except TaskmeshError:
                raise
            except Exception as error:
                raise ConfigError(f"app {spec} failed: {type(error).__name__}: {error}") from error
        apps_done = True
        say("ready")
        signals.wait()
        say("stopping: draining in-flight work")
    finally:
        node.stop()
        if ops is not None:
            ops.stop()


def load_app(spec: str) -> Callable[[Node], Any]:
    """Import ``MODULE:FUNCTION`` (the current directory is importable)."""
    module_name, sep, function_name = spec.partition(":")
    if not sep or not module_name or not function_name:
        raise ConfigError(f"--app {spec!r}: expected MODULE:FUNCTION, e.g. myapp.actors:setup")
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except ImportError as error:
        raise ConfigError(f"--app {spec!r}: cannot import {module_name!r}: {error}") from None
    except Exception as error:
        raise ConfigError(
            f"--app {spec!r}: importing {module_name!r} failed: {type(error).__name__}: {error}"
        ) from None
    function = getattr(module, function_name, None)
    if not callable(function):
        raise ConfigError(f"--app {spec!r}: {module_name} has no function {function_name!r}")
    return function  # type: ignore[no-any-return]
