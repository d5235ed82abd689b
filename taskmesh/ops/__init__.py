"""Operations: the /metrics, /healthz and /readyz endpoint, metrics and logs."""

from __future__ import annotations

from taskmesh.ops.httpd import OpsServer
from taskmesh.ops.latency import LatencyHistogram
from taskmesh.ops.logs import JsonFormatter, configure_logging

__all__ = ["JsonFormatter", "LatencyHistogram", "OpsServer", "configure_logging"]
