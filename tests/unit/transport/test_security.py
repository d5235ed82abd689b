"""CURVE key files."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from taskmesh.errors import ConfigError
from taskmesh.transport import CurveKeys, keygen, load_public_key


def test_keygen_writes_a_public_and_a_private_secret_file(tmp_path: Path) -> None:
    public, secret = keygen(tmp_path / "keys", "node")
    assert public == tmp_path / "keys" / "node.key"
    assert secret == tmp_path / "keys" / "node.key_secret"
    assert stat.S_IMODE(secret.stat().st_mode) == 0o600
    key = load_public_key(public)
    assert len(key) == 40
    assert load_public_key(secret) == key


def test_keygen_never_overwrites_a_key(tmp_path: Path) -> None:
    keygen(tmp_path, "node")
    with pytest.raises(ConfigError, match="exists already"):
        keygen(tmp_path, "node")


def test_curve_keys_load_from_files(tmp_path: Path) -> None:
    _, secret = keygen(tmp_path, "node")
    (tmp_path / "authorized").mkdir()
    keys = CurveKeys.from_files(secret, tmp_path / "authorized")
    assert keys.public_key == load_public_key(secret)
    assert len(keys.secret_key) == 40


def test_missing_or_public_only_key_files_are_config_errors(tmp_path: Path) -> None:
    public, _ = keygen(tmp_path, "node")
    with pytest.raises(ConfigError):
        CurveKeys.from_files(tmp_path / "nope.key_secret", tmp_path)
    with pytest.raises(ConfigError, match="no secret"):
        CurveKeys.from_files(public, tmp_path)
    _, secret = keygen(tmp_path, "other")
    with pytest.raises(ConfigError, match="authorized"):
        CurveKeys.from_files(secret, tmp_path / "missing")
