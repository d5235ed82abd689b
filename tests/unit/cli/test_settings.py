from __future__ import annotations

from pathlib import Path

import pytest

from taskmesh.cli.settings import Settings, load_settings
from taskmesh.errors import ConfigError


def test_defaults_apply_when_nothing_is_given() -> None:
    settings = load_settings({}, environ={})
    assert settings == Settings()
    assert settings.etcd == ()
    assert settings.listen == "tcp://127.0.0.1:0"


def test_flags_beat_environment_beat_file_beat_defaults(tmp_path: Path) -> None:
    config = tmp_path / "node.toml"
    config.write_text(
        '[taskmesh]\ncluster = "from-file"\nlisten = "tcp://127.0.0.1:7000"\n'
        'lease_ttl = 9\ncapabilities = ["gpu", "camera"]\n'
    )
    environ = {"TASKMESH_CLUSTER": "from-env", "TASKMESH_LEASE_TTL": "4.5"}
    settings = load_settings({"cluster": "from-flag"}, environ=environ, config=config)
    assert settings.cluster == "from-flag"
    assert settings.lease_ttl == 4.5
    assert settings.listen == "tcp://127.0.0.1:7000"
    assert settings.capabilities == ("gpu", "camera")


def test_environment_lists_are_comma_separated() -> None:
    environ = {"TASKMESH_ETCD": "http://10.0.0.1:2379, http://10.0.0.2:2379"}
    assert load_settings(environ=environ).etcd == ("http://10.0.0.1:2379", "http://10.0.0.2:2379")


def test_the_config_file_can_come_from_the_environment(tmp_path: Path) -> None:
    config = tmp_path / "c.toml"
    config.write_text('metrics-port = 9100\n[app]\ncolour = "blue"\n')
    settings = load_settings(environ={"TASKMESH_CONFIG": str(config)})
    assert settings.metrics_port == 9100
    assert load_settings(environ={"TASKMESH_START_TIMEOUT": "60"}).start_timeout == 60.0
    assert settings.extra == {"colour": "blue"}


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        ({"listen": "127.0.0.1:5"}, "listen"),
        ({"etcd": ("localhost:2379",)}, "etcd"),
        ({"metrics_port": 70000}, "metrics_port"),
        ({"log_format": "xml"}, "log_format"),
        ({"lease_ttl": 0}, "lease_ttl"),
        ({"start_timeout": 0}, "start_timeout"),
        ({"cluster": "a/b"}, "cluster"),
        ({"otel_endpoint": "collector:4318"}, "otel_endpoint"),
    ],
)
def test_bad_values_name_the_setting(flags: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_settings(flags, environ={})


def test_a_bad_environment_value_says_where_it_came_from() -> None:
    with pytest.raises(ConfigError, match=r"mailbox_size \(from environment\)"):
        load_settings(environ={"TASKMESH_MAILBOX_SIZE": "lots"})


def test_a_bad_config_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_settings(config=tmp_path / "missing.toml")
    broken = tmp_path / "broken.toml"
    broken.write_text("cluster = \n")
    with pytest.raises(ConfigError, match=r"broken\.toml"):
        load_settings(config=broken)
    unknown = tmp_path / "unknown.toml"
    unknown.write_text("colour = 'blue'\n")
    with pytest.raises(ConfigError, match=r"unknown setting 'colour'"):
        load_settings(config=unknown)


def test_the_edge_profile_sets_its_timing_unless_given_explicitly() -> None:
    edge = load_settings({"profile": "edge"})
    assert (edge.lease_ttl, edge.heartbeat_interval, edge.suspect_after) == (10.0, 0.5, 3.0)
    mixed = load_settings(
        {"profile": "edge", "suspect_after": 2.0}, environ={"TASKMESH_LEASE_TTL": "6"}
    )
    assert (mixed.lease_ttl, mixed.heartbeat_interval, mixed.suspect_after) == (6.0, 0.5, 2.0)
    plain = load_settings({})
    assert (plain.lease_ttl, plain.heartbeat_interval, plain.suspect_after) == (3.0, 0.2, 0.9)


@pytest.mark.parametrize(
    ("flags", "needle"),
    [
        ({"profile": "moon"}, "profile"),
        ({"suspect_after": 0.1}, "suspect_after"),
        ({"advertise": "127.0.0.1:5"}, "advertise"),
        ({"etcd_cert": "c.pem"}, "etcd_cert and etcd_key"),
        ({"etcd_password": "x"}, "needs etcd_user"),
    ],
)
def test_bad_timing_and_security_settings_are_refused(
    flags: dict[str, object], needle: str
) -> None:
    with pytest.raises(ConfigError, match=needle):
        load_settings(flags)


def test_the_etcd_password_is_not_in_the_settings_repr() -> None:
    settings = load_settings({"etcd_user": "alice", "etcd_password": "hunter2"})
    assert "hunter2" not in repr(settings)
