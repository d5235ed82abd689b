"""A secured etcd, for real: TLS with client certificates from a CA made at run time,
authentication on (root, and a role per cluster prefix). Nodes and clients work
through the --etcd-* flags, wrong credentials are one clear line, no secret is logged."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from taskmesh.cluster import EmbeddedEtcd, find_etcd_binary
from taskmesh.cluster.embedded import EtcdTls
from tests.etcd_fixtures import unique_cluster
from tests.integration.node.support import NodeProcess, cli
from tests.tls import TestCA

pytestmark = pytest.mark.integration

PASSWORD = "s3cret-Pa55-for-alice"


@dataclass
class Secured:
    etcd: EmbeddedEtcd
    cluster: str
    ca: Path
    cert: Path
    key: Path
    other_ca: Path

    def flags(self, *, password: str = PASSWORD, ca: Path | None = None) -> list[str]:
        return [
            "--etcd", self.etcd.endpoint, "--cluster", self.cluster,
            "--etcd-ca", str(ca or self.ca), "--etcd-cert", str(self.cert),
            "--etcd-key", str(self.key), "--etcd-user", "alice", "--etcd-password", password,
        ]  # fmt: skip


def etcdctl(etcd: EmbeddedEtcd, tls: EtcdTls, *args: str) -> None:
    """Run etcdctl as root (its client certificate's name is root)."""
    binary = find_etcd_binary().with_name("etcdctl")
    auth = ["--cacert", str(tls.ca), "--cert", str(tls.client_cert), "--key", str(tls.client_key)]
    done = subprocess.run(
        [str(binary), "--endpoints", etcd.endpoint, *auth, *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, (args, done.stderr)


@pytest.fixture(scope="module")
def secured(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Secured]:
    pki = tmp_path_factory.mktemp("pki")
    ca = TestCA(pki / "ca")
    server_cert, server_key = ca.issue("etcd-server", server=True)
    root_cert, root_key = ca.issue("root")
    alice_cert, alice_key = ca.issue("alice")
    other = TestCA(pki / "other", name="someone else's CA")
    tls = EtcdTls(server_cert, server_key, ca.cert, root_cert, root_key)
    cluster = unique_cluster()
    etcd = EmbeddedEtcd(tls=tls).start()
    try:
        role = f"taskmesh-{cluster}"
        etcdctl(
            etcd,
            tls,
            "user",
            "add",
            "root",
            "--new-user-password",
            "root-pw",
            "--interactive=false",
        )
        etcdctl(etcd, tls, "role", "add", role)
        etcdctl(
            etcd, tls, "role", "grant-permission", role, "--prefix=true", "readwrite",
            f"/taskmesh/{cluster}/",
        )  # fmt: skip
        etcdctl(
            etcd,
            tls,
            "user",
            "add",
            "alice",
            "--new-user-password",
            PASSWORD,
            "--interactive=false",
        )
        etcdctl(etcd, tls, "user", "grant-role", "alice", role)
        etcdctl(etcd, tls, "auth", "enable")
        yield Secured(etcd, cluster, ca.cert, alice_cert, alice_key, other.cert)
    finally:
        etcd.close()


def error_lines(done: subprocess.CompletedProcess[str]) -> list[str]:
    return [line for line in done.stderr.splitlines() if line.strip()]


def test_nodes_and_clients_work_through_tls_and_auth_and_log_no_secret(secured: Secured) -> None:
    flags = secured.flags()
    with_node = NodeProcess(
        *flags, "--app", "tests.integration.node.apps:echo", "--log-level", "DEBUG", name="sec1"
    )
    try:
        with_node.wait_ready()
        asked = cli("ask", "echo-sec1", '"hi"', *flags)
        assert asked.returncode == 0, asked.stderr
        assert json.loads(asked.stdout)["echo"] == "hi"
        members = cli("members", "--json", *flags)
        assert [m["node"] for m in json.loads(members.stdout)] == ["sec1"]
        routes = cli("routes", "--json", *flags)
        actors = [r["actor"] for r in json.loads(routes.stdout)]
        assert sorted(actors) == ["_workflows", "echo-sec1"]  # the node's workflow coordinator too
        assert with_node.terminate() == 0
    finally:
        with_node.close()
    logged = "\n".join(with_node.output + with_node.stderr)
    assert "INFO taskmesh.cluster" in logged  # the node did log, at DEBUG level and up
    assert PASSWORD not in logged
    assert PASSWORD not in asked.stdout + asked.stderr + members.stderr


@pytest.mark.parametrize(
    ("change", "needle"),
    [
        ({"password": "wrong-password"}, "etcd refused the credentials of user 'alice'"),
        ({"ca": "other"}, "TLS with etcd failed"),
    ],
    ids=["wrong-password", "wrong-ca"],
)
def test_wrong_credentials_are_one_clear_line(
    secured: Secured, change: dict[str, str], needle: str
) -> None:
    if change.get("ca") == "other":
        flags = secured.flags(ca=secured.other_ca)
    else:
        flags = secured.flags(password=change["password"])
    for args in (["members", *flags], ["node", *flags, "--name", "bad"]):
        done = cli(*args, timeout=120)
        assert done.returncode != 0
        lines = [ln for ln in error_lines(done) if ln.startswith("taskmesh: error")]
        assert len(lines) == 1 and needle in lines[0], done.stderr
        assert "Traceback" not in done.stderr
        assert PASSWORD not in done.stderr and "wrong-password" not in done.stderr


def test_a_cluster_outside_the_users_role_is_refused_clearly(secured: Secured) -> None:
    flags = secured.flags()
    flags[flags.index("--cluster") + 1] = "not-alices"
    done = cli("members", *flags, timeout=120)
    assert done.returncode != 0
    lines = [ln for ln in error_lines(done) if ln.startswith("taskmesh: error")]
    assert len(lines) == 1 and "permission denied" in lines[0], done.stderr
