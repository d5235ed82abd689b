"""``taskmesh entities``: sharded entity types, their shards and active entities per node."""

from __future__ import annotations

import time
from typing import Annotated, Any

import typer

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
    etcd_security,
    table,
    to_json,
)
from taskmesh.cli.client_cmds import connected
from taskmesh.entities.report import entities_report
from taskmesh.entities.service import for_client
from taskmesh.errors import ConfigError


@app.command("entities", short_help="Entity types: shards and active entities per node.")
def entities(
    entity_type: Annotated[
        str | None,
        typer.Argument(help="Show only this entity type.", metavar="TYPE", show_default=False),
    ] = None,
    as_json: JsonOpt = False,
    cluster: ClusterOpt = None,
    etcd: EtcdOpt = None,
    config: ConfigOpt = None,
    keys: KeysOpt = None,
    etcd_ca: EtcdCaOpt = None,
    etcd_cert: EtcdCertOpt = None,
    etcd_key: EtcdKeyOpt = None,
    etcd_user: EtcdUserOpt = None,
    etcd_password: EtcdPasswordOpt = None,
) -> None:
    """Show, per entity type, the shards each node owns, the entities
    active on it now (asked of the node), and the last rebalance."""
    security = etcd_security(etcd_ca, etcd_cert, etcd_key, etcd_user, etcd_password)
    with connected(cluster, etcd, config, keys, security=security) as client:
        view = for_client(client).start()
        try:
            if entity_type is not None and view.map.view(entity_type) is None:
                raise ConfigError(
                    f"no node hosts entities of type {entity_type!r} in cluster "
                    f"{client.cluster_name!r}"
                )
            report = entities_report(client, view, entity_type)
        finally:
            view.close()
    if as_json:
        typer.echo(to_json(report))
        return
    typer.echo(render(report))


def render(report: dict[str, Any]) -> str:
    """The text form: one table of nodes per type, then its last rebalance."""
    if not report["types"]:
        return f"cluster {report['cluster']} has no entity types"
    blocks = []
    now = time.time()
    for kind in report["types"]:
        rows = [
            {
                "node": n["node"],
                "shards": n["shards"],
                "active": "?" if n["active"] is None else n["active"],
                "buffered": "?" if n["buffered"] is None else n["buffered"],
                "state": "draining"
                if n["draining"]
                else ("gone" if n["draining"] is None else "serving"),
            }
            for n in kind["nodes"]
        ]
        head = f"{kind['type']}: {kind['shards']} shards"
        if kind["unassigned"]:
            head += f", {kind['unassigned']} unassigned (moving)"
        lines = [head, table(rows, ["node", "shards", "active", "buffered", "state"])]
        last = kind["last_rebalance"]
        if last is not None:
            ago = max(0.0, now - last["at"])
            lines.append(
                f"last rebalance {ago:.0f} s ago by {last['leader']}: "
                f"{last['assigned']} shards assigned, {last['moved']} asked to move"
            )
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks)
