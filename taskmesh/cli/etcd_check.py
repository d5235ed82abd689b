"""Fail fast when etcd cannot be reached, naming the URL.

Without this check a node waits for its first watch snapshot (15 s) and
then names a key prefix, not etcd; a client command waits its start
timeout. One cheap request answers in milliseconds when etcd is there.
"""

from __future__ import annotations

from taskmesh.cli.settings import Settings
from taskmesh.cluster.etcd import EtcdClient
from taskmesh.errors import EtcdUnavailable

__all__ = ["PATIENCE", "check_etcd"]

PATIENCE = 3.0
"""Seconds to keep trying before giving up (gRPC may need a retry or two)."""


def check_etcd(settings: Settings, patience: float = PATIENCE) -> None:
    """Raise :class:`EtcdUnavailable` ("cannot reach etcd at URL") unless an
    endpoint of ``settings.etcd`` answers within ``patience`` seconds.
    Other etcd errors (a refused password, say) pass through as they are."""
    where = ", ".join(settings.etcd)
    try:
        client = EtcdClient(
            settings.etcd,
            timeout=patience,
            user=settings.etcd_user,
            password=settings.etcd_password,
            ca_cert=str(settings.etcd_ca) if settings.etcd_ca else None,
            cert_key=str(settings.etcd_key) if settings.etcd_key else None,
            cert_cert=str(settings.etcd_cert) if settings.etcd_cert else None,
        )
    except EtcdUnavailable:
        raise EtcdUnavailable(f"cannot reach etcd at {where}") from None
    try:
        client.revision()
    except EtcdUnavailable:
        raise EtcdUnavailable(
            f"cannot reach etcd at {where} (no answer within {patience:g} s)"
        ) from None
    finally:
        client.close()
