"""`EtcdClient`: our one door to etcd, over cslab-etcd3.

Every call goes through `_call`, which fails over to the next endpoint and
translates etcd3/gRPC errors into our tree: `EtcdUnavailable` when no
endpoint answers, `ClusterError` for anything else. Keys are ``str``, values
``bytes``; results are our own small dataclasses, so no etcd3 type leaks out.
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any, TypeVar
from urllib.parse import urlsplit

import etcd3
import etcd3.exceptions as etcd_errors
import grpc  # type: ignore[import-untyped, unused-ignore]  # no stubs; see report

from taskmesh.errors import ClusterError, ConfigError, EtcdUnavailable

from ._types import Compare, Delete, Get, KeyValue, Op, Put, Status, TxnResult

__all__ = [
    "Compare",
    "Delete",
    "EtcdClient",
    "Get",
    "KeyValue",
    "Op",
    "Put",
    "Status",
    "TxnResult",
]

_log = logging.getLogger("taskmesh.cluster.etcd")
_T = TypeVar("_T")

_UNAVAILABLE_CODES = {
    grpc.StatusCode.UNAVAILABLE,
    grpc.StatusCode.DEADLINE_EXCEEDED,
    grpc.StatusCode.CANCELLED,
}
_UNAVAILABLE_ERRORS = (
    etcd_errors.ConnectionFailedError,
    etcd_errors.ConnectionTimeoutError,
    etcd_errors.NoServerAvailableError,
    etcd_errors.WatchTimedOut,
)

# Reconnect fast after an etcd restart (gRPC's default backoff grows to 120 s).
# Keepalive pings notice a silent peer; etcd refuses pings more often than 5 s.
_GRPC_OPTIONS = [
    ("grpc.initial_reconnect_backoff_ms", 200),
    ("grpc.min_reconnect_backoff_ms", 200),
    ("grpc.max_reconnect_backoff_ms", 1000),
    ("grpc.keepalive_time_ms", 10_000),
    ("grpc.keepalive_timeout_ms", 5_000),
]


def prefix_end(prefix: str) -> bytes:
    """The range end that selects every key starting with ``prefix``."""
    return bytes(etcd3.utils.prefix_range_end(prefix.encode()))


class EtcdClient:
    """A thread-safe etcd client over one or more endpoints.

    ``endpoints`` are URLs (``http://host:port``; ``https://`` needs
    ``ca_cert``). A call that cannot reach the current endpoint fails over
    to the others and retries for up to ``timeout`` seconds before raising
    `EtcdUnavailable`; ``timeout`` also bounds each single request.
    """

    def __init__(
        self,
        endpoints: str | Sequence[str],
        *,
        timeout: float = 2.0,
        user: str | None = None,
        password: str | None = None,
        ca_cert: str | None = None,
        cert_key: str | None = None,
        cert_cert: str | None = None,
    ) -> None:
        urls = [endpoints] if isinstance(endpoints, str) else list(endpoints)
        if not urls:
            raise ConfigError("etcd needs at least one endpoint")
        self.endpoints = urls
        self.timeout = timeout
        self._user = user
        self._password = password
        creds = None
        if ca_cert is not None:
            creds = etcd3.MultiEndpointEtcd3Client.get_secure_creds(ca_cert, cert_key, cert_cert)
        # A failed endpoint is skipped for `time_retry` seconds; with a single
        # endpoint there is nothing to skip to, so retry it at once.
        retry_after = 0.0 if len(urls) == 1 else 1.0
        eps = [_endpoint(url, creds, retry_after) for url in urls]
        self._lock = threading.Lock()
        self._closed = False
        self.error_count = 0
        """Failed etcd calls so far (each failed try counts); for metrics."""
        self.reachable: bool | None = None
        """Whether the last call reached etcd; None before the first (see `note`)."""
        if (user is None) != (password is None):
            raise ConfigError("etcd authentication needs both a user and a password")
        try:
            self._client = etcd3.MultiEndpointEtcd3Client(
                endpoints=eps, timeout=timeout, user=user, password=password, failover=True
            )
        except grpc.RpcError as exc:
            raise self._explain(exc) or ClusterError(str(exc)) from None

    # --- plumbing -------------------------------------------------------------

    def _call(self, fn: Callable[[Any], _T], *, patience: float | None = None) -> _T:
        """Run ``fn`` on the etcd3 client, failing over and retrying.

        A call that finds no endpoint answering tries every endpoint once,
        and keeps retrying for ``patience`` seconds (the client timeout by
        default: gRPC needs a moment to reconnect after etcd restarts).
        Only then does it raise `EtcdUnavailable`.
        """
        deadline = time.monotonic() + (self.timeout if patience is None else patience)
        for attempt in itertools.count(1):
            if self._closed:
                raise EtcdUnavailable("etcd client is closed")
            try:
                result = fn(self._client)
            except Exception as exc:
                if self._user is not None and "invalid auth token" in str(exc) and attempt < 3:
                    self._authenticate()  # etcd restarted, or another member: tokens are per member
                    continue
                err = self._explain(exc)
                if err is None:
                    raise
                self.error_count += 1
                if not isinstance(err, EtcdUnavailable):
                    raise err from exc
                if attempt >= len(self.endpoints) and time.monotonic() >= deadline:
                    self.note(False, str(err))
                    raise err from exc
                _log.debug("etcd call failed, retrying: %s", exc)
                self.report_failure()
                if attempt >= len(self.endpoints):
                    time.sleep(0.05)
                continue
            if self.reachable is not True:
                self.note(True)
            return result
        raise AssertionError("unreachable")  # pragma: no cover

    def note(self, reachable: bool, detail: str = "") -> None:
        """Log etcd going away and coming back, once each (any thread).

        Every watch and the lease notice an outage on their own; one line
        per change of state is what an operator needs, not one per thread.
        """
        with self._lock:
            before = self.reachable
            if reachable == before or self._closed:
                return
            self.reachable = reachable
        if before is None:
            return  # the first call: a failed start is its caller's error to report
        where = ", ".join(self.endpoints)
        if reachable:
            _log.info("etcd at %s is reachable again", where)
        else:
            _log.warning(
                "cannot reach etcd at %s (%s); serving from the last known cluster state "
                "until it is back", where, detail.removeprefix("etcd unreachable: "),
            )  # fmt: skip

    def _authenticate(self) -> None:
        """Get a new auth token (simple tokens live in one etcd member's memory)."""
        c = self._client
        try:
            resp = c.authstub.Authenticate(
                etcd3.etcdrpc.AuthenticateRequest(name=self._user, password=self._password),
                self.timeout,
            )
        except grpc.RpcError as exc:
            _log.debug("re-authenticating with etcd failed: %s", exc.__class__.__name__)
            return
        c.metadata = (("token", resp.token),)
        c.call_credentials = grpc.metadata_call_credentials(
            etcd3.client.EtcdTokenCallCredentials(resp.token)
        )

    def _explain(self, exc: BaseException) -> ClusterError | None:
        """`_translate`, with a clear word for refused credentials and TLS failures."""
        err = _translate(exc)
        text = str(err) if err is not None else ""
        if "authentication failed" in text:
            return ClusterError(
                f"etcd refused the credentials of user {self._user!r}: wrong user name or password"
            )
        if "permission denied" in text:
            return ClusterError(
                f"etcd user {self._user!r} is not allowed to do this (permission denied): "
                "grant its role readwrite on the cluster's prefix /taskmesh/<cluster>/"
            )
        if "user name is empty" in text or "user name not found" in text:
            return ClusterError("etcd has authentication on: pass --etcd-user and --etcd-password")
        lowered = text.lower()
        if any(word in lowered for word in ("handshake", "certificate", "ssl_error", "tls")):
            return ClusterError(
                "TLS with etcd failed (check --etcd-ca, --etcd-cert and --etcd-key): "
                + text.removeprefix("etcd unreachable: ")
            )
        return err

    def report_failure(self) -> None:
        """Mark the endpoint in use as failed so the next call tries another one."""
        if len(self.endpoints) == 1:
            return
        with self._lock:
            current = self._client.endpoint_in_use
            if current is not None and not current.is_failed():
                current.fail()
            # Stubs are bound to a channel; drop them so the next call picks
            # a live endpoint (etcd3 does the same for its own wrapped calls).
            self._client._clear_old_stubs()

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called (any thread)."""
        return self._closed

    @property
    def raw(self) -> Any:
        """The underlying etcd3 client (for watches in this package only)."""
        return self._client

    def close(self) -> None:
        """Close every channel. Calls after this raise `EtcdUnavailable`."""
        self._closed = True
        self._client.close()

    def __enter__(self) -> EtcdClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- keys -----------------------------------------------------------------

    def get(self, key: str) -> KeyValue | None:
        """The key, or None when it does not exist."""
        resp = self._call(lambda c: c.get_response(key))
        return _kv(resp.kvs[0]) if resp.kvs else None

    def get_prefix(self, prefix: str) -> tuple[list[KeyValue], int]:
        """Every key under ``prefix`` and the store revision they were read at."""
        resp = self._call(lambda c: c.get_prefix_response(prefix))
        return [_kv(kv) for kv in resp.kvs], int(resp.header.revision)

    def put(self, key: str, value: bytes, *, lease: int | None = None) -> int:
        """Write the key; returns the new store revision."""
        resp = self._call(lambda c: c.put(key, value, lease=lease))
        return int(resp.header.revision)

    def delete(self, key: str) -> bool:
        """Delete the key; True if it existed."""
        return bool(self._call(lambda c: c.delete(key)))

    def delete_prefix(self, prefix: str) -> int:
        """Delete every key under ``prefix``; returns how many went."""
        return int(self._call(lambda c: c.delete_prefix(prefix)).deleted)

    def txn(
        self,
        compare: Sequence[Compare],
        success: Sequence[Op] = (),
        failure: Sequence[Op] = (),
    ) -> TxnResult:
        """Run an etcd transaction: ``success`` if every guard holds, else ``failure``."""

        def run(c: Any) -> TxnResult:
            request = etcd3.etcdrpc.TxnRequest(
                compare=[_compare(c, cmp).build_message() for cmp in compare],
                success=c._ops_to_requests([_op(c, op) for op in success]),
                failure=c._ops_to_requests([_op(c, op) for op in failure]),
            )
            resp = c.kvstub.Txn(
                request, c.timeout, credentials=c.call_credentials, metadata=c.metadata
            )
            gets = [
                [_kv(kv) for kv in r.response_range.kvs]
                for r in resp.responses
                if r.WhichOneof("response") == "response_range"
            ]
            return TxnResult(bool(resp.succeeded), int(resp.header.revision), gets)

        return self._call(run)

    def create(self, key: str, value: bytes, *, lease: int | None = None) -> KeyValue | None:
        """Create the key if absent. Returns None if created, else the holder's key."""
        result = self.txn([Compare(key, "create", "==", 0)], [Put(key, value, lease)], [Get(key)])
        if result.succeeded:
            return None
        held = result.gets[0]
        return held[0] if held else None

    def compact(self, revision: int) -> bool:
        """Drop history before ``revision`` (watches behind it get compacted).

        Returns False when etcd had already compacted up to or past it.
        """
        try:
            self._call(lambda c: c.compact(revision, physical=True))
        except ClusterError as exc:
            if "compacted" in str(exc):
                return False
            raise
        return True

    def status(self) -> Status:
        """The answering member's revision and database size."""

        def run(c: Any) -> Status:
            resp = c.maintenancestub.Status(
                etcd3.etcdrpc.StatusRequest(),
                c.timeout,
                credentials=c.call_credentials,
                metadata=c.metadata,
            )
            return Status(int(resp.header.revision), int(resp.dbSize))

        return self._call(run)

    def revision(self, key: str = "\0") -> int:
        """The current store revision (read with a get of ``key``: with etcd's
        authentication on, pass a key the user may read)."""
        resp = self._call(lambda c: c.get_response(key))
        return int(resp.header.revision)

    # --- leases ---------------------------------------------------------------

    def grant(self, ttl: int, *, patience: float | None = None) -> int:
        """Grant a lease of ``ttl`` seconds; returns its id."""
        return int(self._call(lambda c: c.lease(ttl), patience=patience).id)

    def refresh(self, lease: int, *, patience: float | None = None) -> int:
        """Keep the lease alive once; returns its TTL, 0 when it has expired.

        etcd answers a keepalive for an expired lease with TTL 0 and no
        error, so callers must check the value.
        """

        def run(c: Any) -> int:
            replies = list(c.refresh_lease(lease))
            return int(replies[0].TTL) if replies else 0

        return self._call(run, patience=patience)

    def revoke(self, lease: int) -> None:
        """Revoke the lease, deleting its keys. A lease already gone is fine."""
        try:
            self._call(lambda c: c.revoke_lease(lease))
        except ClusterError as exc:
            if "not found" not in str(exc):
                raise

    def time_to_live(self, lease: int) -> int:
        """Seconds left on the lease; -1 when it does not exist."""
        return int(self._call(lambda c: c.get_lease_info(lease)).TTL)

    def granted_ttl(self, lease: int) -> int:
        """The TTL the lease was granted with; -1 when it does not exist."""
        info = self._call(lambda c: c.get_lease_info(lease))
        return int(info.grantedTTL) if int(info.TTL) >= 0 else -1


def _endpoint(url: str, creds: Any, retry_after: float) -> Any:
    parts = urlsplit(url if "://" in url else "http://" + url)
    if parts.hostname is None or parts.port is None:
        raise ConfigError(f"etcd endpoint {url!r} is not a URL like http://host:port")
    secure = parts.scheme == "https"
    if secure and creds is None:
        raise ConfigError(f"etcd endpoint {url!r} uses https: pass --etcd-ca (ca_cert)")
    return etcd3.Endpoint(
        parts.hostname,
        parts.port,
        secure=secure,
        creds=creds if secure else None,
        time_retry=retry_after,
        opts=_GRPC_OPTIONS,
    )


def _translate(exc: BaseException) -> ClusterError | None:
    """Map an etcd3 or gRPC error to our tree; None for anything else."""
    if isinstance(exc, ClusterError):
        return exc
    if isinstance(exc, _UNAVAILABLE_ERRORS):
        return EtcdUnavailable(f"etcd unreachable: {exc or type(exc).__name__}")
    if isinstance(exc, grpc.RpcError):
        code = exc.code() if isinstance(exc, grpc.Call) else None
        details = exc.details() if isinstance(exc, grpc.Call) else str(exc)
        if code in _UNAVAILABLE_CODES:
            return EtcdUnavailable(f"etcd unreachable: {details}")
        return ClusterError(f"etcd error {code}: {details}")
    if isinstance(exc, ValueError) and "failed node" in str(exc):
        return EtcdUnavailable("etcd unreachable: endpoint marked failed")
    if isinstance(exc, etcd_errors.Etcd3Exception):
        return ClusterError(f"etcd error: {type(exc).__name__} {exc}")
    return None


def _kv(kv: Any) -> KeyValue:
    return KeyValue(
        key=kv.key.decode(),
        value=bytes(kv.value),
        create_revision=int(kv.create_revision),
        mod_revision=int(kv.mod_revision),
        lease=int(kv.lease),
    )


def _compare(c: Any, cmp: Compare) -> Any:
    target = {
        "create": c.transactions.create,
        "mod": c.transactions.mod,
        "version": c.transactions.version,
        "value": c.transactions.value,
    }[cmp.target](cmp.key)
    if cmp.op == "==":
        return target == cmp.value
    if cmp.op == "!=":
        return target != cmp.value
    if cmp.op == "<":
        return target < cmp.value
    return target > cmp.value


def _op(c: Any, op: Op) -> Any:
    if isinstance(op, Put):
        return c.transactions.put(op.key, op.value, lease=op.lease)
    if isinstance(op, Delete):
        end = prefix_end(op.key) if op.prefix else None
        return c.transactions.delete(op.key, range_end=end)
    return c.transactions.get(op.key)
