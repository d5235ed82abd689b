"""Transport settings are checked when the transport is built."""

from __future__ import annotations

from pathlib import Path

import pytest

from taskmesh.errors import ConfigError
from taskmesh.transport import CurveKeys, Transport, keygen


@pytest.mark.parametrize("kwargs", [{"max_message_size": 10}, {"max_queue": 0}])
def test_bad_limits_are_config_errors(kwargs: dict[str, int]) -> None:
    with pytest.raises(ConfigError):
        Transport(**kwargs)  # type: ignore[arg-type]


def test_with_curve_a_ref_needs_the_peer_server_key(tmp_path: Path) -> None:
    _, secret = keygen(tmp_path, "node")
    transport = Transport(keys=CurveKeys.from_files(secret, tmp_path))
    with pytest.raises(ConfigError, match="server_key"):
        transport.ref("tcp://127.0.0.1:1", "echo")
