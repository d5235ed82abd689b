from __future__ import annotations

import json
import logging
import urllib.error
import urllib.request

import pytest
from prometheus_client import CollectorRegistry, Counter

from taskmesh.ops import JsonFormatter, LatencyHistogram, OpsServer


def get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


def test_serves_metrics_health_and_readiness() -> None:
    registry = CollectorRegistry()
    Counter("taskmesh_test_things", "things", registry=registry).inc(3)
    ready = [False]
    server = OpsServer("127.0.0.1", 0, registry=registry, ready=lambda: ready[0])
    server.start()
    try:
        assert get(server.url + "/healthz") == (200, "ok\n")
        assert get(server.url + "/readyz") == (503, "not ready\n")
        ready[0] = True
        assert get(server.url + "/readyz") == (200, "ready\n")
        status, body = get(server.url + "/metrics")
        assert status == 200
        assert "taskmesh_test_things_total 3.0" in body
        assert get(server.url + "/nope")[0] == 404
    finally:
        server.stop()


def test_a_failing_readiness_check_reports_not_ready() -> None:
    def broken() -> bool:
        raise RuntimeError("bug")

    server = OpsServer("127.0.0.1", 0, registry=CollectorRegistry(), ready=broken)
    server.start()
    try:
        assert get(server.url + "/readyz")[0] == 503
    finally:
        server.stop()


def test_latency_histogram_is_cumulative() -> None:
    histogram = LatencyHistogram(buckets=(0.01, 0.1))
    for seconds in (0.005, 0.05, 0.05, 5.0):
        histogram.observe(seconds)
    assert histogram.cumulative() == [("0.01", 1), ("0.1", 3), ("+Inf", 4)]
    assert histogram.total == pytest.approx(5.105)


def test_json_logs_are_one_object_per_line() -> None:
    record = logging.makeLogRecord(
        {"name": "taskmesh.x", "levelname": "WARNING", "msg": "hi %s", "args": ("there",)}
    )
    record.peer = "tcp://127.0.0.1:5"
    entry = json.loads(JsonFormatter().format(record))
    assert entry["message"] == "hi there"
    assert entry["level"] == "warning"
    assert entry["peer"] == "tcp://127.0.0.1:5"
