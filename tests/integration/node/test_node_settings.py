"""Settings reach a real node: TOML file, TASKMESH_* variables, flags; JSON logs; keygen."""

from __future__ import annotations

import json
import subprocess
import uuid
from pathlib import Path

from tests.integration.node.support import NodeProcess, cli, env, taskmesh_cmd


def test_a_node_takes_settings_from_file_environment_and_flags(
    etcd_url: str, tmp_path: Path
) -> None:
    cluster = "t" + uuid.uuid4().hex[:8]
    config = tmp_path / "node.toml"
    config.write_text(
        f'[taskmesh]\ncluster = "wrong"\netcd = ["{etcd_url}"]\ncapabilities = ["from-file"]\n'
        'apps = ["tests.integration.node.apps:echo"]\nlog-format = "json"\n'
    )
    process = subprocess.Popen(
        [*taskmesh_cmd(), "node", "--config", str(config), "--name", "cfg"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env(TASKMESH_CLUSTER=cluster),
        cwd=Path(__file__).resolve().parents[3],
    )
    try:
        assert process.stdout is not None
        for line in process.stdout:
            if line.strip() == "taskmesh: ready":
                break
        members = json.loads(
            cli("members", "--json", "--etcd", etcd_url, "--cluster", cluster).stdout
        )
        assert [(m["node"], m["capabilities"]) for m in members] == [("cfg", "from-file")]
        process.terminate()
        _, stderr = process.communicate(timeout=60)
        assert process.returncode == 0
        logs = [json.loads(line) for line in stderr.splitlines() if line.strip()]
        assert logs, "the node logged nothing"
        assert all({"time", "level", "logger", "message"} <= set(entry) for entry in logs)
        assert any(entry["logger"].startswith("taskmesh") for entry in logs)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate(timeout=30)


def test_keygen_writes_a_key_pair_and_refuses_to_overwrite_it(tmp_path: Path) -> None:
    keys = tmp_path / "keys"
    made = cli("keygen", str(keys))
    assert made.returncode == 0, made.stderr
    assert (keys / "node.key").is_file() and (keys / "node.key_secret").is_file()
    assert (keys / "authorized" / "node.key").read_bytes() == (keys / "node.key").read_bytes()
    again = cli("keygen", str(keys))
    assert again.returncode != 0
    assert again.stderr.count("\n") == 1 and "not overwriting" in again.stderr


def test_nodes_with_keys_talk_and_a_client_without_the_key_is_refused(
    etcd_url: str, tmp_path: Path
) -> None:
    keys = tmp_path / "keys"
    assert cli("keygen", str(keys)).returncode == 0
    cluster = "t" + uuid.uuid4().hex[:8]
    flags = ["--etcd", etcd_url, "--cluster", cluster]
    node = NodeProcess(
        *flags, "--keys", str(keys), "--app", "tests.integration.node.apps:echo", name="sec"
    )
    try:
        node.wait_ready()
        trusted = cli("ask", "echo-sec", "1", "--keys", str(keys), *flags)
        assert trusted.returncode == 0, trusted.stderr
        assert json.loads(trusted.stdout)["echo"] == 1
        stranger_keys = tmp_path / "stranger"
        assert cli("keygen", str(stranger_keys)).returncode == 0
        refused = cli(
            "ask", "echo-sec", "1", "--timeout", "3", "--keys", str(stranger_keys), *flags
        )
        assert refused.returncode != 0
        assert refused.stderr.count("\n") == 1
        plain = cli("ask", "echo-sec", "1", "--timeout", "3", *flags)
        assert plain.returncode != 0
    finally:
        node.close()
