"""Operations commands that ask every node: ``dead-letters``.

They connect as a client and ask each member's introspection actor
(:mod:`taskmesh.ops.introspect`) through the mesh, so they work without a
metrics port on any node.
"""

from __future__ import annotations

import time
from typing import Annotated, Any

import typer

from taskmesh.cli.app import ClusterOpt, ConfigOpt, EtcdOpt, JsonOpt, KeysOpt, app, table, to_json
from taskmesh.cli.client_cmds import connected
from taskmesh.ops.clusterview import ClusterView


@app.command("dead-letters", short_help="Dead letters by reason and the last few, per node.")
def dead_letters(
    last: Annotated[
        int, typer.Option("--last", min=0, help="Recent letters shown per node.", metavar="N")
    ] = 5,
    as_json: JsonOpt = False,
    cluster: ClusterOpt = None,
    etcd: EtcdOpt = None,
    config: ConfigOpt = None,
    keys: KeysOpt = None,
) -> None:
    """Show every node's dead letters: counts by reason, and the last few
    letters (their messages cut to 200 characters)."""
    with connected(cluster, etcd, config, keys) as client:
        report = ClusterView(client).collect(letters=last)
    nodes = [
        {
            "node": m["node"],
            "error": m["error"],
            "total": m["dead_letters"]["total"],
            "by_reason": m["dead_letters"]["by_reason"],
            "recent": m["dead_letters"]["recent"],
        }
        for m in report["members"]
    ]
    if as_json:
        typer.echo(to_json({"cluster": report["cluster"], "nodes": nodes}))
        return
    typer.echo(render_dead_letters(report["cluster"], nodes))


def render_dead_letters(cluster: str, nodes: list[dict[str, Any]]) -> str:
    """The text form: a count table, then the recent letters per node."""
    if not nodes:
        return f"cluster {cluster} has no members"
    counts = [
        {"node": n["node"], "reason": reason, "count": count}
        for n in nodes
        for reason, count in sorted(n["by_reason"].items())
    ]
    total = sum(n["total"] for n in nodes)
    lines = [f"cluster {cluster}: {total} dead letters on {len(nodes)} nodes", ""]
    lines.append(table(counts, ["node", "reason", "count"]) if counts else "no dead letters")
    silent = [n for n in nodes if n["error"]]
    for n in silent:
        lines.append(f"{n['node']}: no answer ({n['error']})")
    recent = [
        {
            "node": n["node"],
            "time": time.strftime("%H:%M:%S", time.localtime(letter["at"])),
            "to": letter["recipient"],
            "reason": letter["reason"],
            "message": _cut(letter["message"])
            + (f"  ({letter['error']})" if letter["error"] else ""),
        }
        for n in nodes
        for letter in n["recent"]
    ]
    if recent:
        lines += [
            "",
            "last letters per node:",
            table(recent, ["node", "time", "to", "reason", "message"]),
        ]
    return "\n".join(lines)


def _cut(text: str, limit: int = 60) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."
