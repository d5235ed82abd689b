"""The typer application behind the ``taskmesh`` command.

Every command turns a user mistake (bad JSON, unknown name, unreachable
etcd, bad flag) into one line on stderr and a non-zero exit, never a
traceback: see :func:`main`.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

# typer >= 0.29 vendors click (pinned in pyproject); its usage errors live here.
from typer._click.exceptions import ClickException, NoArgsIsHelpError, UsageError

from taskmesh import __version__
from taskmesh.cli.settings import Settings, load_settings
from taskmesh.errors import ConfigError, TaskmeshError

__all__ = ["app", "main"]

app = typer.Typer(
    name="taskmesh",
    help="Supervised actor trees across machines, with no broker.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)

ClusterOpt = Annotated[
    str | None,
    typer.Option(
        "--cluster",
        help="Cluster name (etcd key prefix).  [default: default]",
        metavar="NAME",
        show_default=False,
    ),
]
EtcdOpt = Annotated[
    str | None,
    typer.Option(
        "--etcd",
        help="etcd endpoint URL(s), comma-separated (or TASKMESH_ETCD).",
        metavar="URL[,URL...]",
        show_default=False,
    ),
]
ConfigOpt = Annotated[
    Path | None,
    typer.Option("--config", help="TOML settings file.", metavar="FILE", show_default=False),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]
EtcdCaOpt = Annotated[
    Path | None,
    typer.Option(
        "--etcd-ca",
        help="CA certificate (PEM) that signed etcd's TLS certificate.",
        metavar="FILE",
        show_default=False,
    ),
]
EtcdCertOpt = Annotated[
    Path | None,
    typer.Option(
        "--etcd-cert",
        help="Client certificate (PEM) for etcd's TLS.",
        metavar="FILE",
        show_default=False,
    ),
]
EtcdKeyOpt = Annotated[
    Path | None,
    typer.Option(
        "--etcd-key", help="Private key (PEM) of --etcd-cert.", metavar="FILE", show_default=False
    ),
]
EtcdUserOpt = Annotated[
    str | None,
    typer.Option("--etcd-user", help="etcd user name.", metavar="USER", show_default=False),
]
EtcdPasswordOpt = Annotated[
    str | None,
    typer.Option(
        "--etcd-password",
        help="etcd password (TASKMESH_ETCD_PASSWORD keeps it out of the process list).",
        metavar="PASSWORD",
        show_default=False,
    ),
]
KeysOpt = Annotated[
    Path | None,
    typer.Option(
        "--keys", help="CURVE keys directory (taskmesh keygen).", metavar="DIR", show_default=False
    ),
]


def _version(value: bool) -> None:
    if value:
        typer.echo(f"taskmesh {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option("--version", callback=_version, is_eager=True, help="Print the version."),
    ] = False,
) -> None:
    """Supervised actor trees across machines, with no broker."""


def etcd_security(
    ca: Path | None, cert: Path | None, key: Path | None, user: str | None, password: str | None
) -> dict[str, Any]:
    """The etcd TLS and auth flags as settings."""
    return {
        "etcd_ca": ca,
        "etcd_cert": cert,
        "etcd_key": key,
        "etcd_user": user,
        "etcd_password": password,
    }


def client_settings(**flags: Any) -> Settings:
    """Settings for a client command; etcd must be known."""
    config = flags.pop("config", None)
    etcd = flags.pop("etcd", None)
    if etcd:
        flags["etcd"] = tuple(part.strip() for part in etcd.split(",") if part.strip())
    settings = load_settings(flags, environ=os.environ, config=config)
    if not settings.etcd:
        raise ConfigError("no etcd endpoint: pass --etcd URL or set TASKMESH_ETCD")
    return settings


def parse_json(text: str, what: str = "MESSAGE") -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as error:
        raise ConfigError(
            f"{what} is not valid JSON: {error.msg} (at character {error.pos})"
        ) from None


def to_json(value: Any) -> str:
    def fallback(obj: Any) -> Any:
        if isinstance(obj, bytes):
            try:
                return obj.decode("utf-8")
            except UnicodeDecodeError:
                return obj.hex()
        if isinstance(obj, frozenset | set | tuple):
            return sorted(obj) if isinstance(obj, frozenset | set) else list(obj)
        return repr(obj)

    return json.dumps(value, default=fallback, sort_keys=True)


def table(rows: list[dict[str, Any]], columns: list[str]) -> str:
    """A plain aligned text table."""
    cells = [[str(row.get(c, "")) for c in columns] for row in rows]
    widths = [max([len(c)] + [len(r[i]) for r in cells]) for i, c in enumerate(columns)]
    lines = ["  ".join(c.upper().ljust(w) for c, w in zip(columns, widths, strict=True)).rstrip()]
    lines += ["  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)).rstrip() for r in cells]
    return "\n".join(lines)


@app.command(short_help="Create a CURVE key pair and an authorized/ directory.")
def keygen(
    directory: Annotated[Path, typer.Argument(help="Where to write the key pair.", metavar="DIR")],
    name: Annotated[str, typer.Option(help="File name of the pair.", metavar="NAME")] = "node",
) -> None:
    """Create a CURVE key pair (NAME.key, NAME.key_secret) and an
    authorized/ directory holding the public key."""
    from taskmesh.transport import keygen as make_keys

    public, secret = make_keys(directory, name)
    authorized = directory / "authorized"
    authorized.mkdir(exist_ok=True)
    (authorized / public.name).write_bytes(public.read_bytes())
    typer.echo(f"public key: {public}\nsecret key: {secret}\nauthorized: {authorized}/")


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point: errors become one line and an exit code."""
    try:
        code = app(args=argv, prog_name="taskmesh", standalone_mode=False)
    except NoArgsIsHelpError as error:
        print(error.format_message() if not error.ctx else error.ctx.get_help(), file=sys.stderr)
        raise SystemExit(2) from None
    except UsageError as error:
        command = error.ctx.command_path if error.ctx else "taskmesh"
        hint = f" (see: {command} --help)"
        print(f"taskmesh: error: {error.format_message()}{hint}", file=sys.stderr)
        raise SystemExit(2) from None
    except typer.Abort:
        print("taskmesh: aborted", file=sys.stderr)
        raise SystemExit(130) from None
    except typer.Exit as done:
        raise SystemExit(done.exit_code) from None
    except ClickException as error:
        print(f"taskmesh: error: {error.format_message()}", file=sys.stderr)
        raise SystemExit(error.exit_code) from None
    except TaskmeshError as error:
        print(f"taskmesh: error: {error}", file=sys.stderr)
        raise SystemExit(1) from None
    except KeyboardInterrupt:
        raise SystemExit(130) from None
    raise SystemExit(code if isinstance(code, int) else 0)
