"""Settings of ``taskmesh node`` and the client commands.

One frozen :class:`Settings`, built once by :func:`load_settings` from, in
order of precedence: command-line flags, ``TASKMESH_*`` environment
variables, a TOML file (``--config``), then the defaults below. Nothing is
read from the environment at import; the CLI passes ``os.environ`` in.
"""

from __future__ import annotations

import dataclasses
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Literal, get_args, get_type_hints

from taskmesh.errors import ConfigError

__all__ = ["ENV_PREFIX", "PROFILES", "Settings", "load_settings"]

ENV_PREFIX = "TASKMESH_"

PROFILES: dict[str, dict[str, float]] = {
    "default": {"lease_ttl": 3.0, "heartbeat_interval": 0.2, "suspect_after": 0.9},
    # Wi-Fi and LTE links: 150 ms +- 50 ms each way, resets, seconds-long black
    # holes. A peer is suspected after 3 s of silence, and a lease survives a
    # 3 s cut to etcd (measured: benchmarks/edge.py, docs/capacity.md).
    "edge": {"lease_ttl": 10.0, "heartbeat_interval": 0.5, "suspect_after": 3.0},
}
"""Timing profiles (``--profile``): what a profile sets unless given explicitly."""

LogFormat = Literal["text", "json"]


@dataclass(frozen=True, slots=True)
class Settings:
    """Everything a node or a client command is configured with."""

    cluster: str = "default"
    """The cluster's name: the etcd key prefix (many clusters can share an etcd)."""
    etcd: tuple[str, ...] = ()
    """etcd endpoints as URLs; empty means start an embedded etcd (``node`` only)."""
    listen: str = "tcp://127.0.0.1:0"
    """The node's ZeroMQ address; port 0 picks a free port."""
    name: str | None = None
    """The node's name in the cluster; default: host name and process id."""
    capabilities: tuple[str, ...] = ()
    """Node-level capability labels (``--capability gpu``)."""
    apps: tuple[str, ...] = ()
    """``MODULE:FUNCTION`` entries called with the node once it runs."""
    metrics_port: int | None = None
    """Port of /metrics, /healthz and /readyz; None: no HTTP endpoint."""
    metrics_host: str = "127.0.0.1"
    """Address the HTTP endpoint binds to (0.0.0.0 for remote scrapers)."""
    keys: Path | None = None
    """Directory with this node's CURVE key pair and the authorized public keys."""
    data_dir: Path | None = None
    """Data directory of the embedded etcd; default: a per-user state directory."""
    log_format: LogFormat = "text"
    log_level: str = "INFO"
    profile: str = "default"
    """Timing profile (`PROFILES`): ``default`` for a LAN, ``edge`` for slow, flaky links."""
    lease_ttl: float = 3.0
    """Seconds before a silent node's registrations expire (the profile's by default)."""
    heartbeat_interval: float = 0.2
    """Seconds between heartbeats to each peer (the profile's by default)."""
    suspect_after: float = 0.9
    """Seconds of peer silence before it is suspected and routed around (the profile's)."""
    advertise: str | None = None
    """The address published for peers, when not the bound one (a proxy, NAT)."""
    grace_period: float = 10.0
    """Seconds in-flight work may take to finish on SIGTERM."""
    mailbox_size: int = 10_000
    ask_timeout: float = 5.0
    send_timeout: float = 10.0
    """Seconds a tell to a full mailbox (here or on another node) waits for room
    before the message is a ``mailbox_full`` dead letter and ``tell`` raises."""
    max_message_size: int = 4 * 1024 * 1024
    flow_window: int = 2048
    """Tells to one remote actor that may be on their way before its node took
    them; then the sender waits for credit (0: no flow control)."""
    claim_timeout: float = 15.0
    """Seconds a named spawn waits for a lease (etcd away) before it fails."""
    start_timeout: float = 15.0
    """Seconds start waits for etcd's first answers before the node gives up
    (raise it on a machine so slow that start-up starves)."""
    compaction_interval: float = 300.0
    """Seconds between the leader's compactions of etcd history (0: off)."""
    otel_endpoint: str | None = None
    """OTLP/HTTP URL to send traces to (``taskmesh[otel]``); None: no tracing."""
    etcd_user: str | None = None
    etcd_password: str | None = field(default=None, repr=False)
    etcd_ca: Path | None = None
    etcd_cert: Path | None = None
    etcd_key: Path | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)
    """Unused keys of the TOML file's ``[app]`` table, for user code."""

    def __post_init__(self) -> None:
        if not self.cluster or "/" in self.cluster:
            raise ConfigError(f"cluster: {self.cluster!r} must be non-empty and contain no '/'")
        if not self.listen.startswith(("tcp://", "ipc://", "inproc://")):
            raise ConfigError(f"listen: {self.listen!r} must look like tcp://HOST:PORT")
        for url in self.etcd:
            if not url.startswith(("http://", "https://")):
                raise ConfigError(f"etcd: {url!r} must be a URL like http://HOST:PORT")
        if self.metrics_port is not None and not 0 <= self.metrics_port <= 65535:
            raise ConfigError(f"metrics_port: {self.metrics_port} is not a port number")
        if self.log_format not in get_args(LogFormat):
            raise ConfigError(f"log_format: {self.log_format!r} must be 'text' or 'json'")
        if self.compaction_interval < 0:
            raise ConfigError("compaction_interval: must be >= 0 (0 turns it off)")
        if (self.etcd_cert is None) != (self.etcd_key is None):
            raise ConfigError("etcd_cert and etcd_key: give both or neither")
        if self.etcd_password is not None and self.etcd_user is None:
            raise ConfigError("etcd_password: needs etcd_user")
        if self.profile not in PROFILES:
            raise ConfigError(f"profile: {self.profile!r} must be one of {', '.join(PROFILES)}")
        if self.otel_endpoint is not None and not self.otel_endpoint.startswith(
            ("http://", "https://")
        ):
            raise ConfigError(
                f"otel_endpoint: {self.otel_endpoint!r} must be a URL like http://HOST:4318"
            )
        if self.advertise is not None and not self.advertise.startswith("tcp://"):
            raise ConfigError(f"advertise: {self.advertise!r} must look like tcp://HOST:PORT")
        if self.suspect_after <= self.heartbeat_interval:
            raise ConfigError("suspect_after: must be longer than heartbeat_interval")
        for name in (
            "lease_ttl",
            "grace_period",
            "ask_timeout",
            "send_timeout",
            "claim_timeout",
            "start_timeout",
            "heartbeat_interval",
        ):
            if getattr(self, name) <= 0:
                raise ConfigError(f"{name}: must be > 0, got {getattr(self, name)!r}")
        if self.flow_window < 0:
            raise ConfigError(f"flow_window: must be >= 0, got {self.flow_window!r}")
        for name in ("mailbox_size", "max_message_size"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name}: must be >= 1, got {getattr(self, name)!r}")


def load_settings(
    flags: Mapping[str, Any] | None = None,
    *,
    environ: Mapping[str, str] | None = None,
    config: Path | str | None = None,
) -> Settings:
    """Build the settings: ``flags`` (None values ignored), then
    ``TASKMESH_*`` variables in ``environ``, then the TOML file ``config``
    (or ``TASKMESH_CONFIG``), then the defaults. Raises :class:`ConfigError`
    naming the bad setting and where it came from."""
    flags = {k: v for k, v in (flags or {}).items() if v is not None and v != ()}
    environ = environ or {}
    config = config or environ.get(ENV_PREFIX + "CONFIG")
    values: dict[str, Any] = {}
    extra: dict[str, Any] = {}
    if config:
        file_values, extra = _read_toml(Path(config))
        values.update(_convert_all(file_values, f"config file {config}"))
    env_values = {
        f.name: environ[ENV_PREFIX + f.name.upper()]
        for f in fields(Settings)
        if f.name != "extra" and ENV_PREFIX + f.name.upper() in environ
    }
    values.update(_convert_all(env_values, "environment"))
    values.update(_convert_all(flags, "flag"))
    for name, value in PROFILES.get(str(values.get("profile", "default")), {}).items():
        values.setdefault(name, value)
    try:
        return Settings(**values, extra=extra)
    except TypeError as error:
        raise ConfigError(str(error)) from None


def _read_toml(path: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist") from None
    except (OSError, tomllib.TOMLDecodeError, UnicodeDecodeError) as error:
        raise ConfigError(f"config file {path}: {error}") from None
    table = data.get("taskmesh", data)
    extra = dict(data.get("app", {})) if isinstance(data.get("app"), dict) else {}
    known = {f.name for f in fields(Settings)} - {"extra"}
    values: dict[str, Any] = {}
    for key, value in table.items():
        if key in ("taskmesh", "app"):
            continue
        name = key.replace("-", "_")
        if name not in known:
            raise ConfigError(f"config file {path}: unknown setting {key!r}")
        values[name] = value
    return values, extra


_HINTS: dict[str, Any] = {}


def _convert_all(raw: Mapping[str, Any], source: str) -> dict[str, Any]:
    if not _HINTS:
        _HINTS.update(get_type_hints(Settings))
    return {name: _convert(name, value, source) for name, value in raw.items()}


def _convert(name: str, value: Any, source: str) -> Any:
    hint = str(_HINTS.get(name, ""))
    where = f"{name} (from {source})"
    try:
        if "tuple[str" in hint:
            if isinstance(value, str):
                return tuple(part.strip() for part in value.split(",") if part.strip())
            if isinstance(value, list | tuple) and all(isinstance(v, str) for v in value):
                return tuple(value)
            raise ValueError(f"expected a list of strings, got {value!r}")
        if "int" in hint and "Path" not in hint:
            if isinstance(value, bool):
                raise ValueError(f"expected a whole number, got {value!r}")
            return int(value)
        if "float" in hint:
            return float(value)
        if "Path" in hint:
            return Path(value).expanduser()
        if isinstance(value, str | int | float):
            return str(value)
        raise ValueError(f"expected a string, got {value!r}")
    except ValueError as error:
        raise ConfigError(f"{where}: {error}") from None


def replace(settings: Settings, **changes: Any) -> Settings:
    """A copy of ``settings`` with ``changes`` (validated again)."""
    return dataclasses.replace(settings, **changes)
