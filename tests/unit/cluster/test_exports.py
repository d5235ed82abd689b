"""The public surface of taskmesh.cluster is exactly its ``__all__``."""

from __future__ import annotations

import taskmesh.cluster as cluster
import taskmesh.cluster.etcd as etcd


def test_every_exported_name_exists() -> None:
    for module in (cluster, etcd):
        for name in module.__all__:
            assert hasattr(module, name), f"{module.__name__}.{name}"


def test_the_facade_and_its_settings_are_exported() -> None:
    assert {"ClusterMember", "ClusterSettings", "EmbeddedEtcd", "start_quorum"} <= set(
        cluster.__all__
    )
    assert sorted(cluster.__all__) == cluster.__all__


def test_cluster_member_satisfies_the_directory_protocol() -> None:
    member: cluster.Directory = cluster.ClusterMember(
        cluster.ClusterSettings(etcd="http://127.0.0.1:1", node="n")
    )
    assert callable(member.route)
    member.stop()


def test_settings_refuse_a_lease_shorter_than_etcd_allows() -> None:
    import pytest

    from taskmesh.errors import ConfigError

    with pytest.raises(ConfigError):
        cluster.ClusterSettings(etcd="http://127.0.0.1:1", lease_ttl=1)
